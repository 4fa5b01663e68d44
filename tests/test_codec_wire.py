"""The wire-level helpers: varints both ways, field spans, replacing one field."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tattler_etcd.codec.wire import (
    CutShort,
    Field,
    length_delimited,
    read_varint,
    replace_field,
    write_varint,
)


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_round_trip(n: int) -> None:
    data = write_varint(n)
    assert read_varint(data + b"tail", 0) == (n, len(data))


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff" * 9])
def test_varint_cut_short(data: bytes) -> None:
    with pytest.raises(CutShort, match=r"^a varint cut short$"):
        read_varint(data, 0)


def test_varint_over_64_bits_is_not_cut_short() -> None:
    with pytest.raises(ValueError, match=r"^a varint over 64 bits$") as info:
        read_varint(b"\xff" * 11, 0)
    assert not isinstance(info.value, CutShort)


def test_length_delimited_skips_other_wire_types_and_replace_redoes_the_length() -> None:
    # field 1 varint 150, field 2 bytes "abc", field 3 fixed32, field 4 bytes "xy"
    msg = b"\x08\x96\x01" + b"\x12\x03abc" + b"\x1d\x00\x00\x00\x00" + b"\x22\x02xy"
    fields = length_delimited(msg)
    assert fields == [Field(2, 5, 8, 3), Field(4, 15, 17, 13)]
    assert replace_field(msg, fields[0], b"a" * 200) == (
        b"\x08\x96\x01" + b"\x12\xc8\x01" + b"a" * 200 + b"\x1d\x00\x00\x00\x00" + b"\x22\x02xy"
    )


@pytest.mark.parametrize("data", [b"\x12\x05ab", b"\x12", b"\x1d\x00"])
def test_length_delimited_cut_short(data: bytes) -> None:
    with pytest.raises(CutShort):
        length_delimited(data)


def test_length_delimited_refuses_groups() -> None:
    with pytest.raises(ValueError, match=r"^wire type 3 where a message was expected$"):
        length_delimited(b"\x0b")
