"""Turns on the event loop: a reader turning a page around goes before the pipeline's long CPU loops.

Why: etcd and tattler-etcd share few cores, and a paged list is fastest when
etcd never waits for us. Between a page's arrival and the request for the
next one, etcd is idle, so the reader's task should run alone then. trio has
no priorities: the pipeline's stages (the safety stage scrubs a chunk of 500
objects in ~6 ms without a checkpoint) ran their slices in that gap each time
the reader checkpointed (httpx checkpoints several times before it writes a
request), ~14 ms a page in a sync of 20,000 Pods.

So a reader *holds* the turn from a reply's full arrival until its next
request is written (:func:`hold`, :func:`release`), and long loops call
:func:`wait_turn` between slices (a few hundred microseconds of work each):
a checkpoint, so a reply that came in is read soon, and while a reader holds
the turn, a wait until the last holder releases it (at most :data:`MAX_WAIT`:
a holder that never releases slows the loops down, it does not stop them).
The state is per trio run.
"""

from __future__ import annotations

import trio

__all__ = ["MAX_WAIT", "hold", "release", "wait_turn"]

#: The longest :func:`wait_turn` waits, in seconds (a turn is held for a few milliseconds).
MAX_WAIT = 0.25


class _Turn:
    __slots__ = ("free", "holders")

    def __init__(self) -> None:
        self.holders = 0
        self.free = trio.Event()


_TURN: trio.lowlevel.RunVar[_Turn] = trio.lowlevel.RunVar("tattler_etcd.turn")


def hold() -> None:
    """Take the turn (nestable: one :func:`release` for every hold)."""
    turn = _TURN.get(None)
    if turn is None:
        turn = _Turn()
        _TURN.set(turn)
    if not turn.holders:
        turn.free = trio.Event()
    turn.holders += 1


def release() -> None:
    """Give the turn back; the loops waiting in :func:`wait_turn` go on once nobody holds it."""
    turn = _TURN.get(None)
    if turn is None or not turn.holders:
        raise RuntimeError("release() without hold()")
    turn.holders -= 1
    if not turn.holders:
        turn.free.set()


async def wait_turn() -> None:
    """Between slices of a long loop: a checkpoint, or a wait while a reader holds the turn."""
    turn = _TURN.get(None)
    if turn is not None and turn.holders:
        with trio.move_on_after(MAX_WAIT):
            await turn.free.wait()
    else:
        await trio.lowlevel.checkpoint()
