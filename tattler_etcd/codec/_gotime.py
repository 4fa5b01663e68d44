"""Go's text forms of time values, as the APIServer writes them in JSON.

``metav1.Time`` is RFC 3339 in UTC to the second, ``metav1.MicroTime`` to the
microsecond, and ``metav1.Duration`` is Go's ``time.Duration.String()``. Both
directions are here so that decode and encode agree with the Go side exactly.
"""

from __future__ import annotations

import datetime
import functools
import re

__all__ = ["format_duration", "format_micro_time", "format_time", "parse_duration", "parse_time"]

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
#: Go's zero time.Time (year 1) in Unix seconds: it marshals as ``null``.
GO_ZERO_SECONDS = -62135596800


@functools.lru_cache(maxsize=8192)
def format_time(seconds: int) -> str | None:
    """``metav1.Time`` as JSON (cached: the same timestamps recur across objects)."""
    if seconds == GO_ZERO_SECONDS:
        return None
    t = _EPOCH + datetime.timedelta(seconds=seconds)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}Z"
    )


def format_micro_time(seconds: int, nanos: int) -> str | None:
    """``metav1.MicroTime`` as JSON: six fraction digits, truncated like Go's format."""
    if seconds == GO_ZERO_SECONDS and nanos == 0:
        return None
    t = _EPOCH + datetime.timedelta(seconds=seconds, microseconds=nanos // 1000)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        f".{t.microsecond:06d}Z"
    )


def parse_time(text: str) -> tuple[int, int]:
    """An RFC 3339 time -> (Unix seconds, nanoseconds). Raises ValueError."""
    if not isinstance(text, str):
        raise TypeError(f"a time must be a string, not {type(text).__name__}")
    dt = datetime.datetime.fromisoformat(text.replace("z", "Z"))
    if dt.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone")
    delta = dt - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    nanos = delta.microseconds * 1000
    # fromisoformat keeps microseconds only; recover nanosecond digits when given.
    m = re.search(r"\.(\d+)", text)
    if m and len(m.group(1)) > 6:
        nanos = int(m.group(1)[:9].ljust(9, "0"))
    return seconds, nanos


_UNITS = (("h", 3600 * 10**9), ("m", 60 * 10**9), ("s", 10**9))


def format_duration(ns: int) -> str:
    """Go's ``time.Duration.String()``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 10**9:
        for unit, size, digits in (("ns", 1, 0), ("µs", 10**3, 3), ("ms", 10**6, 6)):
            if u < size * 1000:
                return sign + _fraction(u, digits) + unit
    out = ""
    hours, rest = divmod(u, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return sign + out + _fraction(rest, 9) + "s"


def _fraction(value: int, digits: int) -> str:
    if digits == 0:
        return str(value)
    whole, frac = divmod(value, 10**digits)
    text = str(whole)
    if frac:
        text += "." + f"{frac:0{digits}d}".rstrip("0")
    return text


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` -> nanoseconds. Raises ValueError."""
    if not isinstance(text, str):
        raise TypeError(f"a duration must be a string, not {type(text).__name__}")
    s = text
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = 0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            raise ValueError(f"invalid duration {text!r}")
        number, unit = m.groups()
        whole, _, frac = number.partition(".")
        size = _UNIT_NS[unit]
        total += int(whole or "0") * size
        if frac:
            total += int(frac) * size // 10 ** len(frac)
        pos = m.end()
    return sign * total
