"""The :class:`Reader` protocol (re-exported by :mod:`tattler_etcd.readers`, which documents it)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import trio

from tattler_etcd.data import Entry
from tattler_etcd.stats import Counters

__all__ = ["Reader"]


@runtime_checkable
class Reader(Protocol):
    """What the :class:`~tattler_etcd.pipeline.runner.Runner` needs of a reader."""

    #: A short unique name; counters are named ``reader.<name>.*``.
    name: str

    async def run(
        self,
        send: trio.MemorySendChannel[list[Entry]],
        counters: Counters,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Send chunks of entries until done or cancelled; close ``send`` on exit.

        Call ``task_status.started()`` once the initial list has been handed
        on (the runner reports the pipeline started when every reader has).
        A finite reader (``--once``, a replay) returns when it is done.
        """
        ...
