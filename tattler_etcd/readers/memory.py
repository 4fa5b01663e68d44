"""A finite reader over entries held in memory: for tests, demos and users' own tests.

``MemoryReader(entries)`` sends the entries in chunks of ``chunk_size``;
``MemoryReader(chunks)`` (an iterable of lists of entries) sends each list as
one chunk, exactly as given, which lets a test decide what arrives together.
Both may be mixed and may be a generator (consumed lazily, so a benchmark
need not hold everything twice).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import trio

from tattler_etcd.data import Entry
from tattler_etcd.stats import Counters

__all__ = ["MemoryReader"]


class MemoryReader:
    """Send ``items`` into the pipeline, then end (or, with ``linger``, wait to be cancelled).

    Args:
        items: entries, or chunks (sequences) of entries, or a mix.
        name: the reader's name (counters ``reader.<name>.chunks`` and ``.entries``).
        chunk_size: how many loose entries go in one chunk.
        pause: seconds to sleep after each chunk (trio time: virtual in tests
            that use the autojump clock); 0 for none.
        linger: after the last chunk, report started and then wait until
            cancelled, like a reader that keeps watching.
    """

    def __init__(
        self,
        items: Iterable[Entry | Sequence[Entry]],
        *,
        name: str = "memory",
        chunk_size: int = 500,
        pause: float = 0.0,
        linger: bool = False,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size!r}")
        self.name = name
        self._items = items
        self._chunk_size = chunk_size
        self._pause = pause
        self._linger = linger

    async def run(
        self,
        send: trio.MemorySendChannel[list[Entry]],
        counters: Counters,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Send every chunk, report started, then return (or linger until cancelled)."""
        async with send:
            loose: list[Entry] = []
            for item in self._items:
                if isinstance(item, Entry):
                    loose.append(item)
                    if len(loose) >= self._chunk_size:
                        await self._send(send, counters, loose)
                        loose = []
                    continue
                if loose:
                    await self._send(send, counters, loose)
                    loose = []
                await self._send(send, counters, list(item))
            if loose:
                await self._send(send, counters, loose)
            task_status.started()
            if self._linger:
                await trio.sleep_forever()

    async def _send(self, send: trio.MemorySendChannel[list[Entry]], counters: Counters, chunk: list[Entry]) -> None:
        await send.send(chunk)
        counters.add(f"reader.{self.name}.chunks")
        counters.add(f"reader.{self.name}.entries", len(chunk))
        if self._pause:
            await trio.sleep(self._pause)
