"""Remember, per resource, the etcd revision up to which entries were handed on.

So a restarted tattler-etcd can watch on from where it stopped instead of
listing everything again. One small JSON file::

    {"format": 1, "prefix": "/registry", "revisions": {"pods": 812, "minions": 790}}

keyed by the resource's storage segment. Revisions are per resource because
each resource has its own watch: a quiet resource only learns that it is up to
date from progress notifications, and resuming every resource from the
slowest one would deliver the others' last events twice.

The file is replaced atomically (write a temporary file, then rename), at
most once per ``interval`` while running and once more on exit, so a crash
loses at most ``interval`` seconds of progress: those events are then
delivered again (at least once), never lost.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from tattler_etcd.errors import ConfigError

__all__ = ["RevisionStore"]

log = logging.getLogger(__name__)

_FORMAT = 1


class RevisionStore:
    """A file of per-resource revisions for one key prefix."""

    def __init__(self, path: str | os.PathLike[str], *, prefix: str, interval: float = 1.0) -> None:
        self.path = Path(path)
        self.prefix = prefix
        self.interval = interval
        self._revisions: dict[str, int] = {}
        self._dirty = False
        self._last_write = float("-inf")

    def load(self, segments: Iterable[str]) -> dict[str, int] | None:
        """The stored revision of every segment, or None when any is missing.

        A missing file is a first start (None). A file for another prefix, or
        one without a revision for some resource read now, is not used (None,
        logged): the reader lists everything, which is always correct.

        Raises:
            ConfigError: the file exists but cannot be read or is not ours.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"--revision-file {self.path}: {exc.strerror}") from exc
        try:
            doc = json.loads(text)
            if doc.get("format") != _FORMAT:
                raise ValueError("format")
            revisions = {str(k): int(v) for k, v in dict(doc["revisions"]).items()}
            prefix = str(doc["prefix"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"--revision-file {self.path}: not a tattler-etcd revision file") from exc
        if prefix != self.prefix:
            log.warning("revision file %s is for prefix %s, not %s: listing everything",
                        self.path, prefix, self.prefix)
            return None
        wanted = list(segments)
        missing = [s for s in wanted if s not in revisions]
        if missing:
            log.info("revision file %s has no revision for %s: listing everything", self.path, ", ".join(missing))
            return None
        self._revisions = {s: revisions[s] for s in wanted}
        return dict(self._revisions)

    def note(self, segment: str, revision: int) -> None:
        """Record that everything of ``segment`` up to ``revision`` was handed on."""
        if revision > self._revisions.get(segment, 0):
            self._revisions[segment] = revision
            self._dirty = True

    def replace(self, revisions: Mapping[str, int]) -> None:
        """Start over from a full list: these revisions, even if lower than the file's."""
        self._revisions = dict(revisions)
        self._dirty = True

    def flush(self, *, force: bool = False) -> None:
        """Write the file if something changed and ``interval`` has passed (or ``force``)."""
        if not self._dirty:
            return
        now = time.monotonic()
        if not force and now - self._last_write < self.interval:
            return
        doc = {"format": _FORMAT, "prefix": self.prefix, "revisions": dict(sorted(self._revisions.items()))}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(doc) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            # Losing the file costs a relist on the next start, not data: say so and go on.
            log.error("cannot write revision file %s: %s", self.path, exc.strerror)
            return
        self._dirty = False
        self._last_write = now

    @property
    def revisions(self) -> dict[str, int]:
        return dict(self._revisions)
