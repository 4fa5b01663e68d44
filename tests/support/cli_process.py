"""The ``tattler-etcd`` command as a real child process, for signal and endpoint tests.

Its stderr is read line by line with a deadline (``wait_for_line``), so a test
can act at a known point of the run (the initial list handed on) instead of
sleeping, and never hangs when that point never comes.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence


class CliProcess:
    """``python -m tattler_etcd ARGS`` with stderr piped; always killed by :meth:`close`."""

    def __init__(self, args: Sequence[str], *, stdout: int | None = subprocess.DEVNULL) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tattler_etcd", *args], stdout=stdout, stderr=subprocess.PIPE, env=env,
        )
        assert self.proc.stderr is not None
        os.set_blocking(self.proc.stderr.fileno(), False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stderr, selectors.EVENT_READ)
        self._buf = b""
        #: Every stderr line read so far.
        self.lines: list[str] = []

    def _read(self, timeout: float) -> bool:
        """Read what stderr has within ``timeout``; False at its end."""
        assert self.proc.stderr is not None
        if not self._sel.select(timeout):
            return True
        data = self.proc.stderr.read()
        if not data:
            return False
        self._buf += data
        *done, self._buf = self._buf.split(b"\n")
        self.lines += [d.decode("utf-8", "replace") for d in done]
        return True

    def wait_for_line(self, text: str, timeout: float = 30.0) -> str:
        """The first stderr line containing ``text``; fails after ``timeout`` or at the end of stderr."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if text in line:
                    return line
            seen = len(self.lines)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no stderr line with {text!r} within {timeout}s:\n" + "\n".join(self.lines))
            if not self._read(left) and seen == len(self.lines):
                raise AssertionError(f"stderr ended without {text!r} (exit {self.proc.poll()}):\n"
                                     + "\n".join(self.lines))

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        """The exit status, reading the rest of stderr; fails if it does not exit within ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._read(max(0.0, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                raise AssertionError("the process did not end within the timeout:\n" + "\n".join(self.lines))
        if self._buf:
            self.lines.append(self._buf.decode("utf-8", "replace"))
            self._buf = b""
        return self.proc.wait(max(0.1, deadline - time.monotonic()))

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._sel.close()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
