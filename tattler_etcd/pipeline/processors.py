"""Built-in processors.

:class:`JsonLinesProcessor` writes one line per entry in the shared JSON form
(:meth:`tattler_etcd.data.Entry.to_json_bytes`): the CLI's output, and a
handy sink for tools that read JSON lines.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable
from typing import IO, Any

import trio

from tattler_etcd.errors import TattlerError
from tattler_etcd.pipeline.batching import Batch

__all__ = ["JsonLinesProcessor"]

logger = logging.getLogger("tattler_etcd.pipeline.processors")


class JsonLinesProcessor:
    """Write each entry of each batch as one JSON line to ``out`` (default: stdout).

    One ``write`` per batch, then a flush (unless ``flush=False``), so a
    reader of the file sees whole batches. ``out`` may be binary or text: a
    text file opened by ``open()`` (or ``sys.stdout``) gets the UTF-8 bytes
    on its underlying buffer, any other text stream (``io.StringIO``) the
    text. Entries are turned into JSON one at a time, protobuf ones by C
    straight from their bytes with no decoded object at all (see
    :meth:`Entry.to_json_bytes <tattler_etcd.data.Entry.to_json_bytes>`). The write is synchronous: local
    files and pipes are fast, and a thread per batch would cost more than it
    saves; a consumer that stops reading a pipe does stall the pipeline (as
    back-pressure should). The caller opens and closes ``out``.

    An entry whose object cannot be decoded is skipped (logged with its key,
    counted in :attr:`skipped`) so one bad value does not lose the batch.

    When the output goes away (a broken pipe: ``tattler-etcd run | head``),
    the processor logs it once, calls ``on_closed`` (the CLI passes
    :meth:`Runner.stop <tattler_etcd.pipeline.Runner.stop>`) and from then on
    only counts what it could not write (:attr:`lost`), rather than failing
    on every batch.
    """

    def __init__(
        self, out: IO[Any] | None = None, *, flush: bool = True, on_closed: Callable[[], None] | None = None,
    ) -> None:
        self._out = out
        self._flush = flush
        self._on_closed = on_closed
        #: Entries skipped because their object could not be decoded.
        self.skipped = 0
        #: Lines written.
        self.written = 0
        #: Lines not written because the output had gone away.
        self.lost = 0
        #: True once the output has gone away.
        self.closed = False

    async def __call__(self, batch: Batch) -> None:
        lines: list[bytes] = []
        for entry in batch:
            try:
                lines.append(entry.to_json_bytes())
            except TattlerError as exc:
                self.skipped += 1
                logger.warning("json-lines: skipped %s: %s", entry.key, str(exc)[:256])
        out = self._out if self._out is not None else sys.stdout
        if lines and self.closed:
            self.lost += len(lines)
        elif lines:
            n = len(lines)
            lines.append(b"")
            try:
                _write(out, b"\n".join(lines))
                if self._flush:
                    out.flush()
            except BrokenPipeError:
                self.closed = True
                self.lost += n
                logger.warning("json-lines: the output was closed; no more lines will be written")
                if self._on_closed is not None:
                    self._on_closed()
            else:
                self.written += n
        await trio.lowlevel.checkpoint()


def _write(out: IO[Any], data: bytes) -> None:
    """``data`` (UTF-8) to a binary stream, a text file's buffer, or as text."""
    if isinstance(out, io.TextIOBase):
        buffer = getattr(out, "buffer", None)
        if buffer is None or (getattr(out, "encoding", None) or "").lower().replace("-", "") != "utf8":
            out.write(data.decode("utf-8"))
            return
        out.flush()  # whatever text is pending goes first
        buffer.write(data)
        return
    out.write(data)
