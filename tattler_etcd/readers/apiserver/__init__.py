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
    ConfigMapBookmarkStore as ConfigMapBookmarkStore,
    FileBookmarkStore as FileBookmarkStore,
)
from tattler_etcd.readers.apiserver.client import APIClient as APIClient, ResourceRef as ResourceRef
from tattler_etcd.readers.apiserver.config import (
    ClusterConfig as ClusterConfig,
    load_incluster as load_incluster,
    load_kubeconfig as load_kubeconfig,
)
from tattler_etcd.readers.apiserver.reader import APIServerReader as APIServerReader, Backoff as Backoff

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
