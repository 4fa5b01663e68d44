"""Running any reader in a test (etcd's, the APIServer's): collect what it sends.

The one helper both readers' tests use. ``run_reader`` starts the reader,
waits for ``started()`` (unless told not to), and cancels it at the end of
the block; :meth:`Harness.take` and :meth:`Harness.drain` receive. The
harness also keeps the state the entries imply (``state``: key ->
resourceVersion of every live object, ``uids``: the live uids, ``seen``:
every (key, change, resourceVersion) in order), as a consumer would.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from tattler_etcd.data import ChangeType, Entry
from tattler_etcd.stats import Counters

__all__ = ["Harness", "run_reader"]


@dataclass
class Harness:
    recv: trio.MemoryReceiveChannel[list[Entry]]
    counters: Counters
    nursery: trio.Nursery
    entries: list[Entry] = field(default_factory=list)
    chunks: list[list[Entry]] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)
    uids: set[str] = field(default_factory=set)
    by_name: dict[str, str] = field(default_factory=dict)
    seen: list[tuple[str, ChangeType, str]] = field(default_factory=list)
    #: Where the next take() starts: the number of entries handed on before started().
    cursor: int = 0

    def _feed(self, chunk: list[Entry]) -> None:
        self.chunks.append(chunk)
        self.entries += chunk
        for e in chunk:
            self.seen.append((e.key, e.change, e.resource_version))
            if e.change is ChangeType.DELETE:
                self.uids.discard(e.uid)
                if self.by_name.get(e.key) == e.uid:
                    del self.by_name[e.key]
                    self.state.pop(e.key, None)
            else:
                self.uids.add(e.uid)
                self.by_name[e.key] = e.uid
                self.state[e.key] = e.resource_version

    async def take(self, n: int) -> list[Entry]:
        """The next ``n`` entries not taken yet (receiving as needed); exactly those.

        Entries the reader sent after ``started()`` but before the harness
        stopped buffering are among them: ``take`` starts where ``started()`` was.
        """
        start = self.cursor
        while len(self.entries) - start < n:
            self._feed(await self.recv.receive())
        got = self.entries[start:]
        assert len(got) == n, f"wanted {n} entries, a chunk brought {len(got)}"
        self.cursor = len(self.entries)
        return got

    async def until(self, predicate: Callable[[Harness], bool]) -> None:
        """Receive until ``predicate(self)`` holds (entries received before count too)."""
        while not predicate(self):
            self._feed(await self.recv.receive())

    async def drain(self) -> list[Entry]:
        """Everything until the reader closes its channel."""
        start = self.cursor
        async for chunk in self.recv:
            self._feed(chunk)
        self.cursor = len(self.entries)
        return self.entries[start:]


@asynccontextmanager
async def run_reader(reader: Any, *, started: bool = True, counters: Counters | None = None,
                     ) -> AsyncIterator[Harness]:
    """Start ``reader.run`` (waiting for ``started()`` unless told not to); cancel it at the end."""
    try:
        async with _run(reader, started, counters if counters is not None else Counters()) as h:
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
async def _run(reader: Any, started: bool, counters: Counters) -> AsyncIterator[Harness]:
    send, recv = trio.open_memory_channel[list[Entry]](0)
    async with trio.open_nursery() as nursery:
        h = Harness(recv, counters, nursery)
        if started:
            # started() comes after the initial state was handed on, so what
            # comes before it is kept at once (in the reader's own task, so
            # the cut is exact); from started() on, chunks wait in the
            # channel for take().
            up = trio.Event()

            class _Started:
                def started(self, value: object = None) -> None:
                    h.cursor = len(h.entries)
                    up.set()

            class _Send:
                async def send(self, chunk: list[Entry]) -> None:
                    if up.is_set():
                        await send.send(chunk)
                    else:
                        await trio.lowlevel.checkpoint()
                        h._feed(chunk)

                def close(self) -> None:
                    send.close()

                async def aclose(self) -> None:
                    await send.aclose()

            nursery.start_soon(functools.partial(reader.run, _Send(), counters, task_status=_Started()))
            await up.wait()
        else:
            nursery.start_soon(reader.run, send, counters)
        try:
            yield h
        finally:
            nursery.cancel_scope.cancel()
