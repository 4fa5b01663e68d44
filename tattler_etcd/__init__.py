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

from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
else:
    from tattler_etcd._lazy import lazy_exports

    # Imported on first use: `tattler-etcd --version` needs none of them (see tattler_etcd/_lazy.py).
    __getattr__, __dir__ = lazy_exports(globals(), {
        "ChangeType": "tattler_etcd.data",
        "Entry": "tattler_etcd.data",
        "SourceType": "tattler_etcd.data",
        "TattlerError": "tattler_etcd.errors",
        "Batch": "tattler_etcd.pipeline",
        "JsonLinesProcessor": "tattler_etcd.pipeline",
        "Policy": "tattler_etcd.pipeline",
        "Runner": "tattler_etcd.pipeline",
        "Reader": "tattler_etcd.readers",
        "APIServerReader": "tattler_etcd.readers.apiserver",
        "EtcdReader": "tattler_etcd.readers.etcd",
        "MemoryReader": "tattler_etcd.readers.memory",
        "Counters": "tattler_etcd.stats",
    })

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
