"""SIGTERM and SIGINT as a service manager means them: finish what was read, then stop.

The first signal starts a drain: the readers stop, the open batch goes to
every processor, the processors close, and the caller's run ends normally
(``kubectl delete pod`` sends SIGTERM and waits the grace period; a person
pressing Ctrl-C wants the same, without a traceback). A second signal means
"now": the process exits at once, with ``128 + signal`` as its status, which
is what a shell reports for a process killed by that signal.

:class:`SignalDrain` listens with :func:`trio.open_signal_receiver`, so while
it runs trio does not turn SIGINT into ``KeyboardInterrupt``; it calls
whatever ``stop`` it was given (``Runner.stop``, ``Recorder.stop``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

import trio

__all__ = ["SIGNALS", "SignalDrain", "exit_status", "run_draining_on_signals"]

logger = logging.getLogger("tattler_etcd.service")

#: The signals that start a drain.
SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)


def exit_status(signum: int | None) -> int:
    """The exit status after a drain: 0 for SIGTERM (a requested stop), 130 for SIGINT (as shells report Ctrl-C).

    ``None`` (no signal) is 0.
    """
    return 128 + signal.SIGINT if signum == signal.SIGINT else 0


class SignalDrain:
    """Turns the first SIGTERM/SIGINT into ``stop()`` and a second one into an immediate exit.

    Start it in the nursery that runs the work, before the work::

        drain = SignalDrain(runner.stop)
        async with trio.open_nursery() as nursery:
            await nursery.start(drain.listen)
            await runner.run()
            nursery.cancel_scope.cancel()
        return exit_status(drain.received)

    Args:
        stop: called once, on the first signal.
        what: what is being stopped, for the log line (``run``, ``record``).
        signals: the signals listened to (default :data:`SIGNALS`).
        exit: called with the status on the second signal (default
            :func:`os._exit`: no cleanup, the user asked twice).
    """

    def __init__(
        self,
        stop: Callable[[], object],
        *,
        what: str = "run",
        signals: Sequence[int] = SIGNALS,
        exit: Callable[[int], object] = os._exit,
    ) -> None:
        self._stop = stop
        self._what = what
        self._signals = tuple(signals)
        self._exit = exit
        #: The first signal received (None: none yet).
        self.received: int | None = None

    async def listen(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; ``task_status.started()`` once the handlers are in place."""
        with trio.open_signal_receiver(*self._signals) as signals:
            task_status.started()
            async for signum in signals:
                self.on_signal(signum)

    def on_signal(self, signum: int) -> None:
        """What one signal does (public so a test can drive it without sending signals)."""
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = signum
            logger.warning("%s received: finishing the %s (what was read is delivered); "
                           "send it again to exit at once", name, self._what)
            self._stop()
            return
        logger.error("%s received again: exiting at once", name)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed or broken pipe: nothing more to save
                pass
        self._exit(128 + signum)


async def run_draining_on_signals(
    work: Callable[[], Awaitable[object]],
    stop: Callable[[], object],
    *,
    what: str = "run",
    alongside: Sequence[Callable[..., Awaitable[object]]] = (),
) -> int:
    """Await ``work()`` with a :class:`SignalDrain` calling ``stop``; return :func:`exit_status`.

    ``alongside`` are tasks started (``nursery.start``, so each is up before
    the work begins) and cancelled once the work ends: the metrics server.
    An exception from ``work`` or from starting them is raised as it is (a
    group holding one error is unwrapped), so a caller's ``except TattlerError``
    still sees it.
    """
    drain = SignalDrain(stop, what=what)
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(drain.listen)
            for task in alongside:
                await nursery.start(task)
            await work()
        except Exception as exc:  # noqa: BLE001 - raised below, outside the nursery
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise _single(failure)
    return exit_status(drain.received)


def _single(exc: Exception) -> Exception:
    """A group holding one error (a reader's, out of a nursery of the work's) as that error."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
