"""The sans-I/O watch stream parsers, fed byte by byte and in odd cuts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tattler_etcd.errors import TransientReaderError
from tattler_etcd.readers.apiserver.watch import FrameParser, JsonLinesParser

EVENTS = [
    {"type": "ADDED", "object": {"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "1"}}},
    {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "7"}}},
    {"type": "DELETED", "object": {"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "9"}}},
]
JSON_STREAM = b"".join(json.dumps(e).encode() + b"\n" for e in EVENTS)
FRAMES = [b"\x0a\x05ADDED", b"", b"x" * 300]
FRAME_STREAM = b"".join(len(f).to_bytes(4, "big") + f for f in FRAMES)


@pytest.mark.parametrize("cut", [1, 2, 7, 64, len(JSON_STREAM)])
def test_json_lines_any_cut(cut: int) -> None:
    p = JsonLinesParser()
    got = []
    for i in range(0, len(JSON_STREAM), cut):
        got += p.feed(JSON_STREAM[i : i + cut])
    got += p.close()
    assert got == EVENTS


def test_json_last_line_without_newline_is_an_event() -> None:
    p = JsonLinesParser()
    assert p.feed(JSON_STREAM[:-1]) == EVENTS[:2]
    assert p.close() == EVENTS[2:]


def test_json_garbage_line_is_a_transient_error_naming_the_watch() -> None:
    p = JsonLinesParser(what="watch pods")
    with pytest.raises(TransientReaderError, match=r"^watch pods: a watch line that is not JSON \(.+\)$"):
        p.feed(b"{not json}\n")
    with pytest.raises(TransientReaderError, match=r"^watch pods: a watch line that is not an event object$"):
        JsonLinesParser(what="watch pods").feed(b"[1]\n")


def test_json_line_over_the_limit() -> None:
    p = JsonLinesParser(what="watch pods", max_event_bytes=10)
    with pytest.raises(TransientReaderError, match=r"^watch pods: a watch event over 10 bytes$"):
        p.feed(b'{"type": "ADDED"')


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 100, len(FRAME_STREAM)])
def test_frames_any_cut(cut: int) -> None:
    p = FrameParser()
    got = []
    for i in range(0, len(FRAME_STREAM), cut):
        got += p.feed(FRAME_STREAM[i : i + cut])
    assert p.close() == []
    assert got == FRAMES


def test_frame_cut_short_at_the_end() -> None:
    p = FrameParser(what="watch pods")
    assert p.feed(FRAME_STREAM[:-3]) == FRAMES[:2]
    with pytest.raises(TransientReaderError,
                       match=r"^watch pods: the watch stream ended inside a frame \(301 bytes left\)$"):
        p.close()


def test_frame_length_over_the_limit() -> None:
    p = FrameParser(what="watch pods", max_event_bytes=100)
    with pytest.raises(TransientReaderError,
                       match=r"^watch pods: a watch frame of 300 bytes, over the 100 limit$"):
        p.feed(FRAME_STREAM)


def test_gc_paused_restores_the_collector_state() -> None:
    import gc

    from tattler_etcd.readers.apiserver.watch import gc_paused

    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # the application's choice stands
    finally:
        gc.enable()
    with pytest.raises(ValueError), gc_paused():
        raise ValueError
    assert gc.isenabled()


@pytest.mark.parametrize("kind", ["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"])
def test_bare_watch_frames_read_like_enveloped_ones(kind: str, testdata: Any) -> None:
    """The codec's wire-level path for bare frames agrees with its full parse of enveloped ones."""
    from tattler_etcd import codec
    from tests.fake_apiserver import encode_event

    obj = json.loads((testdata / "core.v1.Pod.json").read_text())
    if kind == "ERROR":
        obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 410}
    frame = encode_event(kind, obj, True)[4:]
    assert frame[:4] != b"k8s\x00"  # bare, as the APIServer sends it
    got = codec.decode_watch_event(frame)
    assert got == codec.decode_watch_event(codec.wrap("v1", "WatchEvent", frame))
    assert got[0] == kind and codec.decode(got[1])["kind"] == obj["kind"]


@pytest.mark.parametrize("frame", [
    b"\x0a\x05ADD",  # cut short
    b"\x12\x00",  # no type
    b"\x0a\x02\xff\xfe",  # a type that is not UTF-8
])
def test_unusual_bare_frames_get_the_codecs_error(frame: bytes) -> None:
    from tattler_etcd import codec
    from tattler_etcd.errors import DecodeError

    with pytest.raises(DecodeError):
        codec.decode_watch_event(frame)
