"""Readers: the sources that feed the pipeline.

A reader is any object with a ``name`` and this ``run`` coroutine (see
:class:`Reader`). The runner hands each reader its own clone of the pipeline's
input channel; the reader owns it (``async with send:``) and closes it when it
ends, so the pipeline drains once every reader is done.

Readers send *chunks* (lists of entries), not single entries: a channel hop
costs about as much as scrubbing a small Pod, and a first list of 200,000
objects should not pay it 200,000 times. A chunk is whatever the reader got in
one read (a page of a range, one watch message).

Both readers share one policy, :mod:`._reflector` (list, index, watch,
relist, back-off, status); :class:`Backoff` and the status types come from there.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import trio

from tattler_etcd.data import Entry
from tattler_etcd.readers._reflector import Backoff as Backoff
from tattler_etcd.readers._reflector import ReaderStatus as ReaderStatus
from tattler_etcd.readers._reflector import ResourceStatus as ResourceStatus
from tattler_etcd.stats import Counters

__all__ = ["Backoff", "Reader", "ReaderStatus", "ResourceStatus"]


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
