"""Read Kubernetes objects through the APIServer's list and watch.

For clusters whose etcd is out of reach (managed clusters). One connection
per resource type; JSON or protobuf on the wire (protobuf items stay
undecoded until somebody asks for them); WatchList, bookmarks, 410 relists,
periodic relists and resumable versions, as client-go's reflector does them.

    reader = APIServerReader(["pods", "nodes"], config=load_kubeconfig(path, context))
    runner.add_reader(reader)

See ``docs/apiserver-reader.md``.
"""

from tattler_etcd.readers.apiserver.bookmarks import (
    BookmarkStore as BookmarkStore,
)
from tattler_etcd.readers.apiserver.bookmarks import (
    ConfigMapBookmarkStore as ConfigMapBookmarkStore,
)
from tattler_etcd.readers.apiserver.bookmarks import (
    FileBookmarkStore as FileBookmarkStore,
)
from tattler_etcd.readers.apiserver.client import APIClient as APIClient
from tattler_etcd.readers.apiserver.client import ResourceRef as ResourceRef
from tattler_etcd.readers.apiserver.config import (
    ClusterConfig as ClusterConfig,
)
from tattler_etcd.readers.apiserver.config import (
    load_incluster as load_incluster,
)
from tattler_etcd.readers.apiserver.config import (
    load_kubeconfig as load_kubeconfig,
)
from tattler_etcd.readers.apiserver.reader import APIServerReader as APIServerReader
from tattler_etcd.readers._reflector import Backoff as Backoff

__all__ = [
    "APIClient",
    "APIServerReader",
    "Backoff",
    "BookmarkStore",
    "ClusterConfig",
    "ConfigMapBookmarkStore",
    "FileBookmarkStore",
    "ResourceRef",
    "load_incluster",
    "load_kubeconfig",
]
