"""Counters every stage and reader writes to, readable while the pipeline runs.

Names are dotted words, ``<stage>.<what>``: ``safety.in``, ``safety.out``,
``safety.dropped.secret``, ``processor.<name>.dropped``, ``reader.etcd.decode_errors``.
A plain ``collections.Counter`` underneath: every update happens on the trio
thread, so no locking is needed, and a snapshot is a cheap dict copy.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping

__all__ = ["Counters"]


class Counters(collections.Counter[str]):
    """Named counts. ``counters.add("safety.in", 5)``; ``counters["safety.in"]``."""

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name`` (cheap: one dict update)."""
        self[name] += n

    def snapshot(self) -> dict[str, int]:
        """A copy, sorted by name, safe to keep while the pipeline goes on."""
        return dict(sorted(self.items()))

    def prefixed(self, prefix: str) -> Mapping[str, int]:
        """The counters under ``prefix.``, without the prefix."""
        p = prefix + "."
        return {k[len(p):]: v for k, v in sorted(self.items()) if k.startswith(p)}

    def log(self, logger: logging.Logger, level: int = logging.INFO) -> None:
        """Log every counter on one line each (names and numbers only)."""
        for name, value in self.snapshot().items():
            logger.log(level, "counter %s = %d", name, value)
