"""The preprocess stage: the user's callables, in order, on every entry.

A preprocessor takes an :class:`~tattler_etcd.data.Entry` and returns an
Entry (the same one changed in place, or a new one) to keep it, or None to
drop it (a filter). It may be a plain function or a coroutine function; the
stage awaits whatever comes back awaitable. It runs after the safety stage, so
it only ever sees scrubbed objects.

A preprocessor that raises drops that entry only: the drop is counted under
``preprocess.dropped.error`` and logged with the entry's key and the
preprocessor's name (never the body), and the pipeline goes on. Returning
something that is neither an Entry nor None counts as raising.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeAlias

import trio

from tattler_etcd.data import Entry
from tattler_etcd.pipeline.sync import SyncMarker
from tattler_etcd.stats import Counters

__all__ = ["Preprocessor", "preprocessor_name", "run_preprocess"]

logger = logging.getLogger("tattler_etcd.pipeline.preprocess")

#: A sync or async callable: Entry in, Entry (kept) or None (dropped) out.
Preprocessor: TypeAlias = Callable[[Entry], "Entry | None | Awaitable[Entry | None]"]


def preprocessor_name(fn: Preprocessor) -> str:
    """A readable name for logs: the function's qualified name, or its class's."""
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return str(name)


async def run_preprocess(
    receive: trio.MemoryReceiveChannel[list[Entry] | SyncMarker],
    send: trio.MemorySendChannel[list[Entry] | SyncMarker],
    preprocessors: Sequence[Preprocessor],
    *,
    counters: Counters,
) -> None:
    """The stage (a :class:`SyncMarker` passes as it is); closes ``send`` when ``receive`` ends.

    Counters: ``preprocess.in``, ``preprocess.out``,
    ``preprocess.dropped.filtered`` (a preprocessor returned None),
    ``preprocess.dropped.error`` (one raised).
    """
    fns = [(fn, preprocessor_name(fn)) for fn in preprocessors]
    async with receive, send:
        async for chunk in receive:
            if isinstance(chunk, SyncMarker):  # the first sync's end (pipeline.sync): passed on as it is
                await send.send(chunk)
                continue
            out: list[Entry] = []
            for entry in chunk:
                current: Entry = entry
                kept = True
                for fn, name in fns:
                    key = current.key
                    try:
                        result = fn(current)
                        if inspect.isawaitable(result):
                            result = await result
                        if result is not None and not isinstance(result, Entry):
                            raise TypeError(f"returned {type(result).__name__}, not an Entry or None")
                    except Exception as exc:  # noqa: BLE001 - user code: drop the entry, go on
                        counters.add("preprocess.dropped.error")
                        logger.warning(
                            "preprocess: dropped %s: preprocessor %s raised %s: %s",
                            key, name, type(exc).__name__, str(exc)[:256],
                        )
                        kept = False
                        break
                    if result is None:
                        counters.add("preprocess.dropped.filtered")
                        kept = False
                        break
                    current = result
                if kept:
                    out.append(current)
            counters.add("preprocess.in", len(chunk))
            if out:
                counters.add("preprocess.out", len(out))
                await send.send(out)
        # Logged before the channels close, so the log shows the order stages end in.
        logger.debug("stage preprocess closed")
