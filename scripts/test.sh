#!/usr/bin/env bash
# The test suite: set up if needed, then pytest (etcd tests start their own etcd).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
