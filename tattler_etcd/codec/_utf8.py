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
from tattler_etcd.codec.wire import length_delimited, write_varint

__all__: list[str] = []


def _go_replace(exc: UnicodeError) -> tuple[str, int]:
    # Go's JSON encoder replaces each invalid byte with U+FFFD, one at a time.
    assert isinstance(exc, UnicodeDecodeError)
    return "\ufffd", exc.start + 1


codecs.register_error("tattler-go-replace", _go_replace)


def _text(b: bytes) -> str:
    return b.decode("utf-8", "tattler-go-replace")


def _repair_wire(buf: bytes, name: str | None, map_value: str | None = None) -> bytes:
    """Re-encode ``buf`` (a message ``name``, or a map entry when ``map_value`` is
    given) with every invalid UTF-8 string replaced as Go's JSON encoder would."""
    fields = {f.number: f for f in SCHEMA.messages[name].fields} if name else {}
    out = bytearray()
    pos = 0
    for field in length_delimited(buf):
        out += buf[pos:field.header]  # the fields before it that are not length-delimited, as they are
        pos = field.end
        number, value, raw = field.number, buf[field.start:field.end], buf[field.header:field.end]
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
    out += buf[pos:]
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
