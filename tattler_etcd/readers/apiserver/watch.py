"""Sans-I/O parsers for the two watch stream framings.

The reader feeds whatever bytes one network read returned and gets back the
whole events those bytes completed; partial events wait for the next feed.
Keeping the framing apart from the I/O loop (as lightkube's ``WatchDriver``
does) lets the parsers be tested byte by byte, with no server at all.

* JSON (``application/json``): one event object per line,
  ``{"type": "ADDED", "object": {...}}``.
* Protobuf (``application/vnd.kubernetes.protobuf;stream=watch``): each event
  is a 4-byte big-endian length, then that many bytes of a WatchEvent message.
  The parser only cuts frames; the codec reads them.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterator
from typing import Any

from tattler_etcd.errors import TransientReaderError

__all__ = ["MAX_EVENT_BYTES", "FrameParser", "JsonLinesParser", "gc_paused"]

#: Refuse a single event larger than this. etcd caps a value at 1.5 MiB by
#: default and a watch event carries one object, so 64 MiB only trips on a
#: corrupt length prefix, before it makes us buffer gigabytes.
MAX_EVENT_BYTES = 64 * 1024 * 1024


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around a burst of JSON parsing.

    A page of 500 objects is some 10,000 new dicts and lists; every 700 of
    them start a collection, and once the reader holds a large cluster's
    objects the older generations those collections walk are every object it
    holds. Parsing creates no cycles, so pausing the collector for a parse (a
    synchronous call: nothing else runs on this thread meanwhile) loses
    nothing; it made the JSON LIST path about twice as fast at 20,000 Pods.
    A collector the application turned off stays off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class JsonLinesParser:
    """Cuts a JSON watch body into event dicts, one per line."""

    def __init__(self, *, what: str = "watch", max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buf = bytearray()
        self._what = what
        self._max = max_event_bytes

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The events ``data`` completed (maybe none).

        Raises:
            TransientReaderError: a line that is not a JSON object, or too long;
                the stream cannot be trusted past it, so the watch restarts.
        """
        if not data:
            return []
        self._buf += data
        end = self._buf.rfind(b"\n")
        if end < 0:
            if len(self._buf) > self._max:
                raise TransientReaderError(f"{self._what}: a watch event over {self._max} bytes")
            return []
        complete = bytes(self._buf[:end])
        del self._buf[: end + 1]
        events: list[dict[str, Any]] = []
        with gc_paused():
            for line in complete.split(b"\n"):
                if line.strip():
                    events.append(self._parse(line))
        return events

    def close(self) -> list[dict[str, Any]]:
        """Call at the end of the body: a last line without a newline is still an event."""
        rest, self._buf = bytes(self._buf), bytearray()
        return [self._parse(rest)] if rest.strip() else []

    def _parse(self, line: bytes) -> dict[str, Any]:
        try:
            event = json.loads(line)
        except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError for bad bytes
            reason = getattr(exc, "msg", None) or type(exc).__name__
            raise TransientReaderError(f"{self._what}: a watch line that is not JSON ({reason})") from exc
        if not isinstance(event, dict):
            raise TransientReaderError(f"{self._what}: a watch line that is not an event object")
        return event


class FrameParser:
    """Cuts a length-prefixed protobuf watch body into frames (bytes, undecoded)."""

    def __init__(self, *, what: str = "watch", max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buf = bytearray()
        self._what = what
        self._max = max_event_bytes

    def feed(self, data: bytes) -> list[bytes]:
        """The frames ``data`` completed (maybe none).

        Raises:
            TransientReaderError: a length prefix over the limit (a corrupt stream).
        """
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            size = int.from_bytes(buf[pos : pos + 4], "big")
            if size > self._max:
                raise TransientReaderError(
                    f"{self._what}: a watch frame of {size} bytes, over the {self._max} limit"
                )
            if n - pos - 4 < size:
                break
            frames.append(bytes(buf[pos + 4 : pos + 4 + size]))
            pos += 4 + size
        if pos:
            del buf[:pos]
        return frames

    def close(self) -> list[bytes]:
        """Call at the end of the body.

        Raises:
            TransientReaderError: the body ended inside a frame.
        """
        if self._buf:
            left = len(self._buf)
            self._buf = bytearray()
            raise TransientReaderError(f"{self._what}: the watch stream ended inside a frame ({left} bytes left)")
        return []
