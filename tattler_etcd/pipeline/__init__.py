"""The trio pipeline every reader feeds and every processor drains.

::

    reader(s) -> safety -> preprocess -> batching -> routing -> processors

One module per stage (:mod:`.safety`, :mod:`.preprocess`, :mod:`.batching`,
:mod:`.routing`); :mod:`.runner` alone wires them. Most users need only
:class:`Runner`, :class:`Policy`, :class:`Batch` and a processor such as
:class:`JsonLinesProcessor` (a processor may also have ``synced(info: SyncInfo)``,
called once after the first sync, :mod:`.sync`). The redaction rules (shared with the recorder)
are in :mod:`.redaction`. See ``docs/pipeline.md`` and ``docs/safety.md``.
"""

from __future__ import annotations

from tattler_etcd.pipeline.batching import Batch as Batch
from tattler_etcd.pipeline.batching import supersedes as supersedes
from tattler_etcd.pipeline.preprocess import Preprocessor as Preprocessor
from tattler_etcd.pipeline.processors import JsonLinesProcessor as JsonLinesProcessor
from tattler_etcd.pipeline.redaction import Redactor as Redactor
from tattler_etcd.pipeline.routing import Policy as Policy
from tattler_etcd.pipeline.routing import Processor as Processor
from tattler_etcd.pipeline.runner import Runner as Runner
from tattler_etcd.pipeline.safety import REDACTED as REDACTED
from tattler_etcd.pipeline.safety import REDACTED_DATA as REDACTED_DATA
from tattler_etcd.pipeline.safety import scrub_dict as scrub_dict
from tattler_etcd.pipeline.safety import scrub_entry as scrub_entry
from tattler_etcd.pipeline.sync import SyncInfo as SyncInfo

__all__ = [
    "REDACTED",
    "REDACTED_DATA",
    "Batch",
    "JsonLinesProcessor",
    "Policy",
    "Preprocessor",
    "Processor",
    "Redactor",
    "Runner",
    "SyncInfo",
    "scrub_dict",
    "scrub_entry",
    "supersedes",
]
