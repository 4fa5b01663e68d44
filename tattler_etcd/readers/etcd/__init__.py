"""Read Kubernetes objects straight from etcd (no load on the APIServer).

:class:`EtcdReader` lists the chosen resources at one revision, then watches
them through compaction, reconnects and etcd restarts; see
``docs/etcd-reader.md``. :mod:`.keys` maps resources to key prefixes,
:mod:`.gateway` speaks etcd's HTTP/JSON gateway on ``httpx``, and
:mod:`.revstore` remembers how far each resource was read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tattler_etcd.readers.etcd.gateway import TLSFiles as TLSFiles
    from tattler_etcd.readers.etcd.keys import ResourceSpec as ResourceSpec
    from tattler_etcd.readers.etcd.keys import resolve_resource as resolve_resource
    from tattler_etcd.readers.etcd.keys import DEFAULT_RESOURCES as DEFAULT_RESOURCES
    from tattler_etcd.readers.etcd.reader import EtcdReader as EtcdReader
    from tattler_etcd.readers.etcd.revstore import RevisionStore as RevisionStore
else:
    from tattler_etcd._lazy import lazy_exports

    # On first use: the CLI's parser reads `.keys` alone (no httpx, no trio, no codec).
    __getattr__, __dir__ = lazy_exports(globals(), {
        "TLSFiles": "tattler_etcd.readers.etcd.gateway",
        "ResourceSpec": "tattler_etcd.readers.etcd.keys",
        "resolve_resource": "tattler_etcd.readers.etcd.keys",
        "DEFAULT_RESOURCES": "tattler_etcd.readers.etcd.keys",
        "EtcdReader": "tattler_etcd.readers.etcd.reader",
        "RevisionStore": "tattler_etcd.readers.etcd.revstore",
    })

__all__ = ["DEFAULT_RESOURCES", "EtcdReader", "ResourceSpec", "RevisionStore", "TLSFiles", "resolve_resource"]
