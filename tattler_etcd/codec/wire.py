"""The few protobuf wire-format primitives that code outside the schema needs.

Most of the codec works on upb messages built from our schema. A handful of
places are cheaper, or only possible, at the wire level: reading the two
fields of a watch frame without parsing it twice, and swapping one
length-delimited field's payload (the recorder scrubs an embedded object and
keeps every other byte), repairing invalid UTF-8 field by field. They share
these helpers instead of each carrying a varint reader of its own.

One deliberate exception: the envelope's quick split (``_envelope._split_envelope``)
reads a size of one or two bytes inline, on the path of every object; a call
to :func:`read_varint` there cost 100-140 ns more a split (about +25 %), and
any other shape goes to upb anyway.

Errors are ``ValueError`` (callers translate them to their own error family
with the key or file they know).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["CutShort", "Field", "length_delimited", "read_varint", "replace_field", "write_varint"]


class CutShort(ValueError):
    """The bytes end inside a varint or a field (as opposed to bytes that are not protobuf at all)."""


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it.

    Raises:
        CutShort: the bytes end inside the varint.
        ValueError: the varint is over 64 bits.
    """
    value = shift = 0
    while True:
        if shift > 63:
            raise ValueError("a varint over 64 bits")
        if pos >= len(data):
            raise CutShort("a varint cut short")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def write_varint(n: int) -> bytes:
    """``n`` (0 or more) as a varint."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class Field(NamedTuple):
    """One length-delimited field: its number, its payload's span, and where its key starts."""

    number: int
    start: int
    end: int
    header: int


def length_delimited(data: bytes) -> list[Field]:
    """The length-delimited fields of a message, in order; other wire types are skipped.

    Raises:
        CutShort: the bytes end inside a field.
        ValueError: the bytes are not a well-formed message (a group, an
            unknown wire type, a varint over 64 bits).
    """
    out: list[Field] = []
    pos = 0
    n = len(data)
    while pos < n:
        header = pos
        key, pos = read_varint(data, pos)
        wire = key & 7
        if wire == 0:
            _, pos = read_varint(data, pos)
        elif wire == 2:
            size, pos = read_varint(data, pos)
            if pos + size > n:
                raise CutShort("a field cut short")
            out.append(Field(key >> 3, pos, pos + size, header))
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"wire type {wire} where a message was expected")
    if pos != n:
        raise CutShort("a field cut short")
    return out


def replace_field(data: bytes, field: Field, payload: bytes) -> bytes:
    """``data`` with ``field``'s payload replaced; its key is kept and its length redone."""
    _, key_end = read_varint(data, field.header)
    return b"".join((data[:key_end], write_varint(len(payload)), payload, data[field.end:]))
