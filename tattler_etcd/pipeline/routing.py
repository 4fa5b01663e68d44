"""The routing stage: every batch to every processor, each under its own policy.

Each processor runs in its own task and has its own channel from the router,
holding up to ``buffer`` batches besides the one it is working on (default 0).

* :attr:`Policy.BLOCK`: the router waits until the processor takes the batch,
  so a slow processor slows the whole pipeline down to the readers
  (back-pressure) and loses nothing.
* :attr:`Policy.DROP`: the router hands the batch over only if the processor
  can take it now; otherwise that processor loses that batch (counted under
  ``processor.<name>.dropped`` and ``processor.<name>.dropped_entries``) and
  nobody waits for it. DROP processors are served before BLOCK ones, so a
  waiting BLOCK processor does not make them lose batches either.

A processor that raises is reported as a
:class:`~tattler_etcd.errors.ProcessorError` naming it (logged, counted under
``processor.<name>.errors``, kept in :attr:`Runner.errors`) and keeps
receiving the next batches; the other processors never notice.

A processor with an ``async def synced(self, info)`` method also gets, once,
a :class:`~tattler_etcd.pipeline.sync.SyncInfo` in order with its batches:
after every batch of the readers' initial state (:mod:`.sync`). A DROP
processor is handed it as soon as it can take it (a batch coming while it
waits for it is dropped for that processor, as any); ``info.dropped`` says
whether it lost a batch before.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import trio

from tattler_etcd.errors import ProcessorError
from tattler_etcd.pipeline.batching import Batch
from tattler_etcd.pipeline.sync import SyncInfo, SyncMarker
from tattler_etcd.stats import Counters

__all__ = ["Policy", "Processor", "Route", "run_processor", "run_routing"]

logger = logging.getLogger("tattler_etcd.pipeline.routing")


class Policy(enum.Enum):
    """What the router does when a processor is not ready for the next batch.

    Attributes:
        BLOCK: wait for it (back-pressure reaches the readers; nothing is lost).
        DROP: skip it for this batch (counted); it never slows anyone else.
    """

    BLOCK = "block"
    DROP = "drop"


@runtime_checkable
class Processor(Protocol):
    """A processor: an async callable taking one :class:`Batch`.

    A coroutine function works as it is; so does any object with an
    ``async def __call__(self, batch)``. It must not keep the batch after
    returning (the pipeline would hold its memory), nor change its entries
    (other processors see the same objects).
    """

    async def __call__(self, batch: Batch, /) -> None: ...


@dataclass(eq=False)
class Route:
    """One registered processor and its channel from the router (``synced``: its method of that name, if any).

    ``call`` is what the processor's task calls with each batch: the processor
    itself, or a wrapper around it (the runner's timing, when metrics are on);
    ``processor`` stays the one registered.
    """

    name: str
    processor: Callable[[Batch], object]
    policy: Policy
    buffer: int = 0
    synced: Callable[[SyncInfo], Awaitable[None]] | None = None
    call: Callable[[Batch], object] = field(init=False)
    send: trio.MemorySendChannel[Batch | SyncInfo] = field(init=False)
    receive: trio.MemoryReceiveChannel[Batch | SyncInfo] = field(init=False)

    def __post_init__(self) -> None:
        self.call = self.processor
        self.send, self.receive = trio.open_memory_channel[Batch | SyncInfo](self.buffer)


async def run_routing(
    receive: trio.MemoryReceiveChannel[Batch | SyncMarker],
    routes: Sequence[Route],
    *,
    counters: Counters,
) -> None:
    """The stage: fan each batch out; closes every route's channel when ``receive`` ends.

    Counters: ``routing.batches``, ``routing.entries``, and per DROP
    processor ``processor.<name>.dropped`` / ``.dropped_entries``.
    """
    drop = [r for r in routes if r.policy is Policy.DROP]
    block = [r for r in routes if r.policy is Policy.BLOCK]
    marked = False
    dropped: set[str] = set()  # DROP processors that lost a batch before the marker
    try:
        # A DROP processor busy when the marker comes gets it from a task of its own, in order:
        # while that task waits, the channel is full and its next batches are dropped as usual.
        async with trio.open_nursery() as waiting, receive:
            async for batch in receive:
                if isinstance(batch, SyncMarker):
                    marked = True
                    for r in routes:
                        if r.synced is None:
                            continue
                        info = SyncInfo(batch.readers, dropped=r.name in dropped)
                        if r.policy is Policy.DROP:
                            waiting.start_soon(_hand_over, r, info)
                        else:
                            await _hand_over(r, info)
                    continue
                counters.add("routing.batches")
                counters.add("routing.entries", len(batch))
                for r in drop:
                    try:
                        r.send.send_nowait(batch)
                    except trio.WouldBlock:
                        if not marked:
                            dropped.add(r.name)
                        counters.add(f"processor.{r.name}.dropped")
                        counters.add(f"processor.{r.name}.dropped_entries", len(batch))
                    except trio.BrokenResourceError:
                        # Its task is gone (only when the runner is stopping hard).
                        counters.add(f"processor.{r.name}.dropped")
                        counters.add(f"processor.{r.name}.dropped_entries", len(batch))
                for r in block:
                    try:
                        await r.send.send(batch)
                    except trio.BrokenResourceError:
                        counters.add(f"processor.{r.name}.dropped")
                        counters.add(f"processor.{r.name}.dropped_entries", len(batch))
    finally:
        logger.debug("stage routing closed")
        for r in routes:
            r.send.close()


async def _hand_over(route: Route, info: SyncInfo) -> None:
    try:
        await route.send.send(info)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # its task is gone (only when the runner is stopping hard)


async def run_processor(
    route: Route,
    *,
    counters: Counters,
    on_error: Callable[[ProcessorError], None] | None = None,
) -> None:
    """One processor's task: call it on each batch until the router closes its channel.

    A :class:`SyncInfo` goes to its ``synced`` method instead (errors reported the same way).
    Counters: ``processor.<name>.batches``, ``.entries``, ``.errors``, ``.synced``.
    """
    name = route.name
    proc = route.call
    async with route.receive:
        async for batch in route.receive:
            try:
                if isinstance(batch, SyncInfo):
                    if route.synced is not None:
                        await route.synced(batch)
                        counters.add(f"processor.{name}.synced")
                    continue
                await proc(batch)  # type: ignore[misc]
            except Exception as exc:
                err = ProcessorError(name, exc)
                err.__cause__ = exc
                counters.add(f"processor.{name}.errors")
                logger.error("%s", err)
                logger.debug("processor %r traceback", name, exc_info=exc)
                if on_error is not None:
                    on_error(err)
                continue
            counters.add(f"processor.{name}.batches")
            counters.add(f"processor.{name}.entries", len(batch))
        logger.debug("stage processor %s closed", name)
