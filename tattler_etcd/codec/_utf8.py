"""Values whose strings are not valid UTF-8: repaired as Go's JSON encoder would, not refused.

Go stores any bytes in a string field and its JSON encoder replaces each
invalid byte with U+FFFD. Our upb classes check UTF-8 while parsing (see
``_schema``), so a value that fails is rewritten at the wire level, every
string field of the schema with the same replacement, and parsed again;
each repair is counted (``codec.invalid_utf8``).
"""

from __future__ import annotations

import codecs
from typing import Any

from google.protobuf.message import DecodeError as _PbDecodeError

from tattler_etcd.codec._convert import counters
from tattler_etcd.codec._envelope import _PARSE_ERRORS, _parse_error
from tattler_etcd.codec._schema import SCHEMA
from tattler_etcd.codec.wire import write_varint

__all__: list[str] = []


def _go_replace(exc: UnicodeError) -> tuple[str, int]:
    # Go's JSON encoder replaces each invalid byte with U+FFFD, one at a time.
    assert isinstance(exc, UnicodeDecodeError)
    return "\ufffd", exc.start + 1


codecs.register_error("tattler-go-replace", _go_replace)


def _text(b: bytes) -> str:
    return b.decode("utf-8", "tattler-go-replace")


def _wire_fields(buf: bytes) -> list[tuple[int, int, Any, bytes]]:
    """(number, wire type, value, the field's raw bytes) for each top-level field; ValueError if malformed."""
    out = []
    i, n = 0, len(buf)

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            if i >= n or shift > 63:
                raise ValueError("bad varint")
            c = buf[i]
            i += 1
            result |= (c & 0x7F) << shift
            shift += 7
            if c < 0x80:
                return result

    while i < n:
        start = i
        key = varint()
        wt = key & 7
        value: Any
        if wt == 0:
            value = varint()
        elif wt == 1:
            value, i = buf[i:i + 8], i + 8
        elif wt == 5:
            value, i = buf[i:i + 4], i + 4
        elif wt == 2:
            length = varint()
            value, i = buf[i:i + length], i + length
        else:
            raise ValueError("unsupported wire type")
        if i > n:
            raise ValueError("truncated")
        out.append((key >> 3, wt, value, buf[start:i]))
    return out


def _repair_wire(buf: bytes, name: str | None, map_value: str | None = None) -> bytes:
    """Re-encode ``buf`` (a message ``name``, or a map entry when ``map_value`` is
    given) with every invalid UTF-8 string replaced as Go's JSON encoder would."""
    fields = {f.number: f for f in SCHEMA.messages[name].fields} if name else {}
    out = bytearray()
    for number, wt, value, raw in _wire_fields(buf):
        if wt != 2:
            out += raw
            continue
        if map_value is not None:
            ftype = "string" if number == 1 else map_value
            label = "opt"
        elif number in fields:
            ftype, label = fields[number].type, fields[number].label
        else:
            out += raw
            continue
        if label == "map":
            payload = _repair_wire(value, None, ftype)
        elif ftype == "string":
            payload = _text(value).encode("utf-8")
        elif ftype in SCHEMA.messages:
            payload = _repair_wire(value, ftype)
        else:
            out += raw
            continue
        out += write_varint(number << 3 | 2) + write_varint(len(payload)) + payload
    return bytes(out)


def _parse_typed(name: str, raw: bytes, what: str) -> Any:
    """Parse the typed object; a value with invalid UTF-8 in a string is repaired, not refused."""
    try:
        return SCHEMA.message_class(name).FromString(raw)
    except _PARSE_ERRORS as exc:
        first = exc
    if not isinstance(first, _PbDecodeError):
        raise _parse_error(what, raw, first)
    try:
        msg = SCHEMA.message_class(name).FromString(_repair_wire(bytes(raw), name))
    except (*_PARSE_ERRORS, KeyError):
        raise _parse_error(what, raw, first) from None
    counters.add("codec.invalid_utf8")
    return msg
