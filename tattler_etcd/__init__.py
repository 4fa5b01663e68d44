"""tattler-etcd: read Kubernetes object state once and fan it out to many processors.

::

    reader(s) -> safety -> preprocess -> batching -> routing -> processors

The names most programs need are here; each subpackage documents the rest:
:mod:`tattler_etcd.codec` (the protobuf storage codec), :mod:`tattler_etcd.pipeline`
(the stages and the :class:`Runner`), :mod:`tattler_etcd.readers.etcd`,
:mod:`tattler_etcd.readers.apiserver`, :mod:`tattler_etcd.replay` and
:mod:`tattler_etcd.errors`. A complete program::

    import trio
    from tattler_etcd import EtcdReader, Runner

    async def show(batch):
        for entry in batch:
            print(entry.change.value, entry.kind, entry.key)

    async def main():
        runner = Runner(batch_window=2.0)
        runner.add_reader(EtcdReader("http://127.0.0.1:2379", resources=["pods", "nodes"]))
        runner.add_processor("show", show)
        await runner.run()

    trio.run(main)
"""

from __future__ import annotations

from tattler_etcd.data import ChangeType as ChangeType
from tattler_etcd.data import Entry as Entry
from tattler_etcd.data import SourceType as SourceType
from tattler_etcd.errors import TattlerError as TattlerError
from tattler_etcd.pipeline import Batch as Batch
from tattler_etcd.pipeline import JsonLinesProcessor as JsonLinesProcessor
from tattler_etcd.pipeline import Policy as Policy
from tattler_etcd.pipeline import Runner as Runner
from tattler_etcd.readers import Reader as Reader
from tattler_etcd.readers.apiserver import APIServerReader as APIServerReader
from tattler_etcd.readers.etcd import EtcdReader as EtcdReader
from tattler_etcd.readers.memory import MemoryReader as MemoryReader
from tattler_etcd.stats import Counters as Counters

__version__ = "0.1.0"

__all__ = [
    "APIServerReader",
    "Batch",
    "ChangeType",
    "Counters",
    "Entry",
    "EtcdReader",
    "JsonLinesProcessor",
    "MemoryReader",
    "Policy",
    "Reader",
    "Runner",
    "SourceType",
    "TattlerError",
]
