"""Read Kubernetes objects straight from etcd (no load on the APIServer).

:class:`EtcdReader` lists the chosen resources at one revision, then watches
them through compaction, reconnects and etcd restarts; see
``docs/etcd-reader.md``. :mod:`.keys` maps resources to key prefixes,
:mod:`.gateway` speaks etcd's HTTP/JSON gateway on ``httpx``, and
:mod:`.revstore` remembers how far each resource was read.
"""

from tattler_etcd.readers.etcd.gateway import TLSFiles as TLSFiles
from tattler_etcd.readers.etcd.keys import ResourceSpec as ResourceSpec
from tattler_etcd.readers.etcd.keys import resolve_resource as resolve_resource
from tattler_etcd.readers.etcd.reader import DEFAULT_RESOURCES as DEFAULT_RESOURCES
from tattler_etcd.readers.etcd.reader import EtcdReader as EtcdReader
from tattler_etcd.readers.etcd.revstore import RevisionStore as RevisionStore

__all__ = ["DEFAULT_RESOURCES", "EtcdReader", "ResourceSpec", "RevisionStore", "TLSFiles", "resolve_resource"]
