"""The batching stage: collect entries for a time window or up to a size, deduplicated by UID.

A batch opens when its first entry arrives and is sent when ``window``
seconds have passed since then or when it holds ``size`` distinct objects,
whichever comes first; when the input ends, the open batch is sent at once.
No empty batch is ever sent.

Inside a batch there is one entry per UID (a processor wants the state of each
object, not every step it took). Which entry wins, see :func:`supersedes`: a
DELETE wins over any change to the same UID, else the newer resource version,
else the later arrival. (The Go tattler compared creation timestamps, which
never change for an object, and so kept the oldest update.) The winner takes
the place of its latest arrival, so a batch iterates in the order the objects
last changed.

This is the one stage that buffers: it holds the open batch. Every channel is
unbuffered, so the batch is the pipeline's only queue and its size bounds
memory.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence

import trio

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.pipeline.sync import SyncMarker
from tattler_etcd.stats import Counters

__all__ = ["Batch", "run_batching", "supersedes"]

logger = logging.getLogger("tattler_etcd.pipeline.batching")

_DELETE = ChangeType.DELETE


class Batch:
    """Entries delivered together: one per UID, in arrival order, grouped by source.

    Iterating gives every entry in arrival order; :meth:`by_source` gives them
    grouped by where they were read from (each group in arrival order). A
    batch is shared by every processor: treat it and its entries as read-only.
    """

    __slots__ = ("_by_source", "_entries", "seq")

    def __init__(self, entries: Sequence[Entry], *, seq: int = 0) -> None:
        self._entries = tuple(entries)
        #: The batch's number, from 1, in the order the batcher sent them.
        self.seq = seq
        self._by_source: dict[SourceType, tuple[Entry, ...]] | None = None

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> tuple[Entry, ...]:
        """Every entry, in arrival order."""
        return self._entries

    def by_source(self) -> Mapping[SourceType, tuple[Entry, ...]]:
        """The entries grouped by source, sources in the order they first appear."""
        if self._by_source is None:
            groups: dict[SourceType, list[Entry]] = {}
            for e in self._entries:
                g = groups.get(e.source)
                if g is None:
                    groups[e.source] = [e]
                else:
                    g.append(e)
            self._by_source = {s: tuple(g) for s, g in groups.items()}
        return self._by_source

    @property
    def sources(self) -> tuple[SourceType, ...]:
        """The sources present, in the order they first appear."""
        return tuple(self.by_source())

    def __repr__(self) -> str:
        return f"Batch(seq={self.seq}, entries={len(self._entries)})"


def supersedes(new: Entry, old: Entry) -> bool:
    """Whether ``new`` replaces ``old`` (same UID; ``new`` arrived later).

    A DELETE is final: it beats any other change, and only a newer DELETE
    beats it (a UID is never reused, so a change arriving after its delete is
    a late copy). Otherwise the newer resource version wins, compared as
    numbers when both are digit strings (as etcd revisions and the
    APIServer's are); when they cannot be compared, or are equal, the later
    arrival wins.
    """
    if old.change is _DELETE and new.change is not _DELETE:
        return False
    if new.change is _DELETE and old.change is not _DELETE:
        return True
    a, b = new.resource_version, old.resource_version
    if a != b and a.isdigit() and b.isdigit() and a.isascii() and b.isascii():
        return int(a) > int(b)
    return True


async def run_batching(
    receive: trio.MemoryReceiveChannel[list[Entry] | SyncMarker],
    send: trio.MemorySendChannel[Batch | SyncMarker],
    *,
    window: float,
    size: int,
    counters: Counters,
) -> None:
    """The stage; sends the open batch and closes ``send`` when ``receive`` ends.

    A :class:`~tattler_etcd.pipeline.sync.SyncMarker` sends the open batch, then itself.

    Counters: ``batching.in``, ``batching.out`` (entries sent in batches),
    ``batching.batches``, ``batching.dropped.duplicate`` (superseded entries).
    """
    pending: dict[str, Entry] = {}
    deadline = math.inf
    seq = 0

    async def flush() -> None:
        nonlocal pending, deadline, seq
        seq += 1
        batch = Batch(list(pending.values()), seq=seq)
        pending = {}
        deadline = math.inf
        counters.add("batching.batches")
        counters.add("batching.out", len(batch))
        await send.send(batch)

    async with receive, send:
        while True:
            chunk: list[Entry] | SyncMarker | None = None
            with trio.move_on_at(deadline):
                try:
                    chunk = await receive.receive()
                except trio.EndOfChannel:
                    break
            if chunk is None:  # the window closed
                await flush()
                continue
            if isinstance(chunk, SyncMarker):
                # The first sync's end (pipeline.sync): what came before it goes first, in its own batch.
                if pending:
                    await flush()
                await send.send(chunk)
                continue
            counters.add("batching.in", len(chunk))
            dups = 0
            for entry in chunk:
                # An object without a UID (should not happen) is kept apart by its key.
                uid = entry.uid or "\0" + entry.key
                old = pending.get(uid)
                if old is not None:
                    dups += 1
                    if supersedes(entry, old):
                        # Re-insert so the winner sits at its latest arrival.
                        del pending[uid]
                        pending[uid] = entry
                    continue
                if not pending:
                    deadline = trio.current_time() + window
                pending[uid] = entry
                if len(pending) >= size:
                    await flush()
            if dups:
                counters.add("batching.dropped.duplicate", dups)
            if pending and trio.current_time() >= deadline:
                await flush()
        if pending:
            await flush()
        logger.debug("stage batching closed")
