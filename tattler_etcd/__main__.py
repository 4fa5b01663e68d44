import sys

from tattler_etcd.cli import main

sys.exit(main())
