"""Running a reader against the fake in a test: collect what it sends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from tattler_etcd.data import Entry
from tattler_etcd.stats import Counters

__all__ = ["Harness", "run_reader"]


@dataclass
class Harness:
    recv: trio.MemoryReceiveChannel[list[Entry]]
    counters: Counters
    nursery: trio.Nursery
    entries: list[Entry] = field(default_factory=list)
    chunks: list[list[Entry]] = field(default_factory=list)

    async def take(self, n: int) -> list[Entry]:
        """Receive until ``n`` more entries arrived; return exactly those."""
        start = len(self.entries)
        while len(self.entries) - start < n:
            chunk = await self.recv.receive()
            self.chunks.append(chunk)
            self.entries += chunk
        got = self.entries[start:]
        assert len(got) == n, f"wanted {n} entries, a chunk brought {len(got)}"
        return got

    async def drain(self) -> list[Entry]:
        """Everything until the reader closes its channel."""
        start = len(self.entries)
        async for chunk in self.recv:
            self.chunks.append(chunk)
            self.entries += chunk
        return self.entries[start:]


@asynccontextmanager
async def run_reader(reader: Any, *, started: bool = True) -> AsyncIterator[Harness]:
    """Start ``reader.run`` (waiting for ``started()`` unless told not to); cancel it at the end."""
    try:
        async with _run(reader, started) as h:
            yield h
    except BaseExceptionGroup as group:
        # One failure (the reader's) comes out as itself, so tests can match it.
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:  # type: ignore[type-arg]
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


@asynccontextmanager
async def _run(reader: Any, started: bool) -> AsyncIterator[Harness]:
    send, recv = trio.open_memory_channel[list[Entry]](0)
    counters = Counters()
    async with trio.open_nursery() as nursery:
        h = Harness(recv, counters, nursery)
        if started:
            # started() comes after the initial state was handed on, so
            # someone must receive meanwhile: buffer it here.
            buffered: list[list[Entry]] = []

            async with trio.open_nursery() as inner:

                async def pump() -> None:
                    async for chunk in recv:
                        buffered.append(chunk)

                inner.start_soon(pump)
                await nursery.start(reader.run, send, counters)
                inner.cancel_scope.cancel()
            for chunk in buffered:
                h.chunks.append(chunk)
                h.entries += chunk
        else:
            nursery.start_soon(reader.run, send, counters)
        try:
            yield h
        finally:
            nursery.cancel_scope.cancel()
