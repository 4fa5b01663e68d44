"""Logging for the command: ``-v``, ``--log-level``, ``--log-format text|json``, and the CLI's own notices.

``text`` (the default) is one human line per record. ``json`` is one JSON
object per line, for log collectors: ``time`` (UTC, ISO 8601), ``level``,
``logger``, ``message``, then any extra fields the call passed
(``logger.warning(..., extra={"key": k, "resource": r, "endpoint": u})``).
Extra fields are kept only when they are plain scalars and short strings: an
object body (a dict, a list, bytes) is never written, whatever a caller passed.

The command's own messages (errors, notes, the bundled-replay notice) go
through :func:`notice`: ``tattler-etcd: error: ...`` in text mode, a JSON line
in json mode, so a collector never sees a line it cannot parse. Notices are
shown whatever the level.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["LEVELS", "JsonFormatter", "notice", "setup"]

LEVELS = ("debug", "info", "warning", "error", "critical")

#: The attributes every ``LogRecord`` has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
#: Longest string an extra field may carry (keys and URLs fit; a value smuggled in does not).
_MAX_EXTRA = 512

#: Third-party loggers that put HTTP bodies in their messages; held at WARNING.
_BODY_LOGGERS = ("vcr",)

_LOGGER = logging.getLogger("tattler_etcd.cli")
_handler: logging.Handler | None = None
_json = False


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, scalar extras, and ``exc`` when raised."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name in _STANDARD or name.startswith("_") or name in doc:
                continue
            if isinstance(value, bool | int | float) or value is None:
                doc[name] = value
            elif isinstance(value, str) and len(value) <= _MAX_EXTRA:
                doc[name] = value
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            doc["exc"] = f"{type(exc).__name__}: {str(exc)[:_MAX_EXTRA]}"
        return json.dumps(doc, ensure_ascii=False, default=str)


@contextlib.contextmanager
def setup(level: int, fmt: str = "text") -> Iterator[None]:
    """Log to stderr at ``level`` in ``fmt`` while the command runs; restore the root logger after.

    Restoring matters when :func:`tattler_etcd.cli.main` is called in-process (tests, embedding).
    """
    global _handler, _json
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    before = root.level
    root.addHandler(handler)
    root.setLevel(level)
    # vcrpy logs whole request and response bodies at INFO and DEBUG: objects never reach our logs.
    quiet = {name: logging.getLogger(name).level for name in _BODY_LOGGERS}
    for name in _BODY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, level))
    _handler, _json = handler, fmt == "json"
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(before)
        for name, lvl in quiet.items():
            logging.getLogger(name).setLevel(lvl)
        _handler, _json = None, False


def notice(message: str, *, kind: str = "note", **extra: Any) -> None:
    """A message of the command itself (``kind``: error, warning, note), shown whatever the level."""
    if _json and _handler is not None:
        level = {"error": logging.ERROR, "warning": logging.WARNING}.get(kind, logging.INFO)
        record = _LOGGER.makeRecord(_LOGGER.name, level, "", 0, message, (), None, extra=extra)
        _handler.handle(record)
        return
    prefix = "" if kind == "plain" else f"{kind}: "
    print(f"tattler-etcd: {prefix}{message}", file=sys.stderr, flush=True)
