"""A real server process for tests: started on free loopback ports, always stopped.

:class:`EtcdServer` and :class:`NatsServer` differ in their command line and in
how they say they are up; starting, waiting, stopping, crashing and cleaning up
are the same, and live here once.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Self

__all__ = ["ServerProcess", "die_with_parent"]


def die_with_parent() -> None:
    """In the child: have Linux stop the server when the test process dies, even by SIGKILL.

    The fixtures stop their server in a ``finally``; a killed pytest never gets
    there, and an orphaned server would keep its ports and temp dir.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class PortTakenError(RuntimeError):
    """The server could not bind a port: another process took it between ``free_port()`` and the bind."""


class ServerProcess:
    """One server process with a state directory (temporary unless given) and a log beside it.

    A subclass sets ``name`` and calls :meth:`_launch` from its ``start``.
    """

    name = "server"

    def __init__(self, state_dir: str | None, prefix: str) -> None:
        import tempfile

        self._own_dir = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix=prefix)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(self.state_dir).with_suffix(".log")

    def _launch(self, cmd: Sequence[str], answers: Callable[[], bool], timeout: float) -> None:
        """Start ``cmd`` and poll ``answers()`` until it is true; fail (and kill it) after ``timeout`` s."""
        with open(self.log_path, "ab") as log:
            logged = log.tell()
            self.proc = subprocess.Popen(list(cmd), stdout=log, stderr=log, start_new_session=True,
                                         preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with open(self.log_path, "rb") as log:
                    log.seek(logged)
                    taken = b"address already in use" in log.read()
                raise (PortTakenError if taken else RuntimeError)(
                    f"{self.name} exited with {self.proc.returncode}; log: {self.log_path}")
            if answers():
                return
            time.sleep(0.05)  # polling a real process coming up, not settling test state
        self.kill()  # never leave a process behind that nobody will stop
        raise RuntimeError(f"{self.name} did not answer within {timeout}s; log: {self.log_path}")

    def new_ports(self) -> None:
        """Choose other free ports (before the first start only: a restart keeps its ports)."""
        raise NotImplementedError

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGKILL for a crash); the state dir stays for a restart."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @contextlib.contextmanager
    def running(self) -> Iterator[Self]:
        """Started for the ``with`` block, always closed after it (a fixture's body, or one test's server).

        A port taken by another process between ``free_port()`` and the
        server's bind (seen in CI, with other servers starting) is not the
        test's failure: the server gets new ports and starts again, up to 3 times.
        """
        for attempt in range(3):
            try:
                self.start()  # type: ignore[attr-defined]  # each subclass has its own start(...)
                break
            except PortTakenError:
                if attempt == 2:
                    raise
                self.new_ports()
        try:
            yield self
        finally:
            self.close()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            try:
                self.log_path.unlink()
            except FileNotFoundError:
                pass
