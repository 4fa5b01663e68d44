"""codec.parse / redact_parsed / to_dict / to_bytes, the quick envelope split, and the generated walkers."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tattler_etcd import codec
from tattler_etcd.codec import _api, _redact
from tattler_etcd.errors import DecodeError, EncodeError, TruncatedValueError, UnknownKindError
from tests.test_codec import FIXTURES, ld, varint

ENV_PATHS = (
    ("spec", "containers", "*", "env", "*", "value"),
    ("spec", "initContainers", "*", "env", "*", "value"),
    ("spec", "ephemeralContainers", "*", "env", "*", "value"),
)
SECRET = "zQ9-the-clear-value"


def pod(value: str = SECRET, **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "namespace": "ns", "uid": "u"}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [
        {"name": "a", "image": "i", "env": [{"name": "E", "value": value}, {"name": "F", "value": ""}]}]}}


def star(s: str | bytes) -> str | bytes:
    return "***" if isinstance(s, str) else b"***"


def held_bytes(o: Any) -> list[bytes | bytearray]:
    """Every bytes object ``o`` holds directly (its slots), to look for a clear value."""
    return [x for x in gc.get_referents(o) if isinstance(x, (bytes, bytearray))]


# ---------------------------------------------------------------- parse, to_bytes, to_dict


@pytest.mark.parametrize("name", FIXTURES)
def test_parse_then_to_dict_and_to_bytes_match_decode(testdata: Path, name: str) -> None:
    pb = (testdata / f"{name}.pb").read_bytes()
    parsed = codec.parse(pb)
    meta = codec.peek(pb)
    assert (parsed.api_version, parsed.kind) == (meta.api_version, meta.kind)
    assert codec.to_dict(parsed) == codec.decode(pb)
    assert codec.to_bytes(parsed) is pb  # nothing changed: the very bytes


def test_to_dict_gives_a_new_dict_each_time() -> None:
    parsed = codec.parse(codec.encode(pod()))
    a = codec.to_dict(parsed)
    a["metadata"]["name"] = "changed"
    assert codec.to_dict(parsed)["metadata"]["name"] == "p"


def test_parse_reads_only_the_envelope_until_needed() -> None:
    raw = _api._split_envelope(codec.encode(pod()))[2]
    parsed = codec.parse(codec.wrap("v1", "Pod", raw[:-3]))  # the object is cut short; the envelope is fine
    assert parsed.kind == "Pod"
    assert codec.redact_parsed(parsed, [("metadata", "absent")], star) == 0  # reaches nothing: no parse
    with pytest.raises(TruncatedValueError, match=r"^v1 Pod: the bytes end inside a field "):
        codec.redact_parsed(parsed, ENV_PATHS, star)


def test_parse_refuses_json_and_bad_envelopes() -> None:
    with pytest.raises(DecodeError, match=r"^a JSON value cannot be parsed as protobuf \(decode it instead\)$"):
        codec.parse(json.dumps(pod()).encode())
    with pytest.raises(DecodeError, match=r"^not a Kubernetes object: neither JSON nor the k8s protobuf envelope$"):
        codec.parse(b"nope")
    with pytest.raises(UnknownKindError, match=r"^no schema for apiVersion 'v1' kind 'Gizmo'$"):
        codec.parse(codec.wrap("v1", "Gizmo", b""))
    with pytest.raises(TruncatedValueError, match=r"^envelope: the bytes end inside a field \(6 bytes\)$"):
        codec.parse(b"k8s\x00\x0a\x05\x0a\x02v1")  # typeMeta cut short


def test_parse_takes_bytearray_and_memoryview() -> None:
    value = codec.encode(pod())
    for form in (bytearray(value), memoryview(value)):
        parsed = codec.parse(form)  # type: ignore[arg-type]
        assert codec.to_dict(parsed) == codec.decode(value)
        assert codec.to_bytes(parsed) == value


def test_parsed_repr_names_the_kind_only() -> None:
    assert repr(codec.parse(codec.encode(pod()))) == "Parsed(v1 Pod)"


# ---------------------------------------------------------------- redact_parsed


@pytest.mark.parametrize("name", ["core.v1.Pod", "apps.v1.Deployment", "batch.v1.CronJob", "core.v1.Secret"])
def test_redact_parsed_agrees_with_redact(testdata: Path, name: str) -> None:
    pb = (testdata / f"{name}.pb").read_bytes()
    paths = (*ENV_PATHS, ("spec", "template", "spec", "containers", "*", "env", "*", "value"),
             ("spec", "jobTemplate", "spec", "template", "spec", "containers", "*", "env", "*", "value"),
             ("data", "*"), ("stringData", "*"))
    want, n = codec.redact(pb, paths, star)
    assert n > 0
    parsed = codec.parse(pb)
    assert codec.redact_parsed(parsed, paths, star) == n
    assert codec.to_bytes(parsed) == want
    assert codec.to_dict(parsed) == codec.decode(want)


def test_redact_parsed_keeps_no_clear_bytes_once_changed() -> None:
    value = codec.encode(pod())
    parsed = codec.parse(value)
    assert any(SECRET.encode() in b for b in held_bytes(parsed))  # the original, kept while unchanged
    assert codec.redact_parsed(parsed, ENV_PATHS, star) == 2  # an empty value is there too, set to ""
    assert not any(SECRET.encode() in b for b in held_bytes(parsed))
    out = codec.to_bytes(parsed)
    assert SECRET.encode() not in out
    assert codec.decode(out)["spec"]["containers"][0]["env"] == [{"name": "E", "value": "***"},
                                                                  {"name": "F", "value": "***"}]


def test_redact_parsed_is_cumulative_and_counts_only_changes() -> None:
    parsed = codec.parse(codec.encode(pod(a="1", b="2")))
    assert codec.redact_parsed(parsed, [("metadata", "annotations", "a")], lambda s: "x") == 1
    assert codec.redact_parsed(parsed, [("metadata", "annotations", "*")], lambda s: "x") == 1  # "a" is x already
    assert codec.redact_parsed(parsed, ENV_PATHS, lambda s: s) == 0
    assert codec.to_dict(parsed)["metadata"]["annotations"] == {"a": "x", "b": "x"}


def test_redact_parsed_unchanged_gives_the_very_bytes() -> None:
    value = codec.encode(pod())
    parsed = codec.parse(value)
    assert codec.redact_parsed(parsed, ENV_PATHS, lambda s: s) == 0
    assert codec.redact_parsed(parsed, (), star) == 0
    assert codec.to_bytes(parsed) is value


def test_redact_parsed_failing_fn_leaves_no_stale_bytes() -> None:
    value = codec.encode(pod())
    parsed = codec.parse(value)
    calls = []

    def fn(s: str | bytes) -> str | bytes:
        calls.append(s)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return "***"

    with pytest.raises(RuntimeError, match=r"^boom$"):
        codec.redact_parsed(parsed, ENV_PATHS, fn)
    # the first leaf was edited before the failure: the bytes must say so
    out = codec.to_bytes(parsed)
    assert out is not value and SECRET.encode() not in out


def test_redact_parsed_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match=r"^redact_parsed: expected a Parsed, got bytes$"):
        codec.redact_parsed(b"k8s\x00", ENV_PATHS, star)  # type: ignore[arg-type]
    parsed = codec.parse(codec.encode(pod()))
    with pytest.raises(EncodeError, match=r"^redact: fn returned int, not str or bytes$"):
        codec.redact_parsed(parsed, ENV_PATHS, lambda s: 3)  # type: ignore[arg-type,return-value]


def test_fn_results_are_coerced_to_the_field_type(testdata: Path) -> None:
    parsed = codec.parse(codec.encode(pod()))
    assert codec.redact_parsed(parsed, ENV_PATHS[:1], lambda s: b"\xffbytes") == 2
    assert codec.to_dict(parsed)["spec"]["containers"][0]["env"][0]["value"] == "\ufffdbytes"
    secret = codec.parse((testdata / "core.v1.Secret.pb").read_bytes())
    assert codec.redact_parsed(secret, [("data", "*")], lambda s: "text") > 0
    assert set(codec.to_dict(secret)["data"].values()) == {"dGV4dA=="}


# ---------------------------------------------------------------- the envelope


def _upb_split(value: bytes) -> tuple[str, str, bytes]:
    env = _api._envelope(value)
    return env.typeMeta.apiVersion, env.typeMeta.kind, env.raw


def _outcome(fn: Any, value: bytes) -> Any:
    try:
        return fn(value)
    except DecodeError as exc:
        return type(exc), exc.message


@pytest.mark.parametrize("name", FIXTURES)
def test_quick_split_agrees_with_upb_on_fixtures(testdata: Path, name: str) -> None:
    pb = (testdata / f"{name}.pb").read_bytes()
    assert _api._split_envelope(pb) == _upb_split(pb)
    assert _api._split_envelope(pb) == _upb_split(pb)  # the second time from the known heads


def envelope(av: bytes, kind: bytes, raw: bytes, tail: bytes) -> bytes:
    return b"k8s\x00" + ld(1, ld(1, av) + ld(2, kind)) + ld(2, raw) + tail


def test_quick_split_takes_only_what_upb_takes() -> None:
    good = envelope(b"v1", b"Pod", b"\x0a\x00", b"\x1a\x00\x22\x00")
    _api._split_envelope(good)  # learn the head
    cases = [
        good,
        good[:-4],  # no tail
        good[:-2],  # contentEncoding only
        good + b"\x22\x00",  # a repeated field: upb's last-wins
        good[:-1],  # truncated tail
        good[:-6],  # raw cut short
        envelope(b"v1", b"Pod", b"x" * 200, b""),  # two-byte size
        envelope(b"v1", b"Pod", b"x" * 20000, b""),  # three-byte size
        envelope(b"v1", b"Pod", b"", b"\x1a\x03abc\x22\x00"),  # a non-empty contentEncoding
        envelope(b"v1", b"Pod", b"", b"\x2a\x00"),  # an unknown field
        b"k8s\x00" + ld(1, ld(2, b"Pod") + ld(1, b"v1")) + ld(2, b""),  # kind first
        envelope(b"v1", b"\xff", b"", b""),  # invalid UTF-8
        envelope(b"v1" * 70, b"Pod", b"", b""),  # a typeMeta over 127 bytes
        b"k8s\x00\x0a",
        b"k8s\x00",
    ]
    for value in cases:
        assert _outcome(_api._split_envelope, value) == _outcome(_upb_split, value), value[:40]
        assert _outcome(_api._split_envelope, value) == _outcome(_upb_split, value), value[:40]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=12), st.sampled_from([b"v1", b"apps/v1", b""]), st.sampled_from([b"Pod", b"x" * 130]),
       st.binary(max_size=300), st.integers(0, 60))
def test_quick_split_agrees_with_upb_on_mangled_envelopes(
    tail: bytes, av: bytes, kind: bytes, raw: bytes, cut: int,
) -> None:
    value = envelope(av, kind, raw, tail)
    for v in (value, value[: len(value) - cut]):
        for _ in range(2):  # before and after the head is known
            assert _outcome(_api._split_envelope, v) == _outcome(_upb_split, v)


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16383, 16384, 2_100_000])
def test_wrap_writes_the_size_as_a_varint(size: int) -> None:
    raw = b"\x00" * size
    want = b"k8s\x00" + ld(1, ld(1, b"v1") + ld(2, b"Pod")) + b"\x12" + varint(size) + raw + b"\x1a\x00\x22\x00"
    assert codec.wrap("v1", "Pod", raw) == want
    assert codec.wrap("v1", "Pod", bytearray(raw)) == want  # type: ignore[arg-type]


# ---------------------------------------------------------------- generated walkers


def _leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths to every leaf of a decoded object, with indices and keys, and "*" in their place."""
    out: list[tuple[str, ...]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _leaf_paths(v, (*prefix, k))
            if isinstance(v, (dict, list)) and v:
                out.append((*prefix, k))  # ending at a container
        if node and len(prefix) > 1:
            first = next(iter(node.values()))
            out += [(*prefix[:-1], "*", *p[len(prefix) - 1:]) for p in _leaf_paths(first, prefix)[:3]]
    elif isinstance(node, list) and node:
        for i, v in enumerate(node[:2]):
            out += _leaf_paths(v, (*prefix, str(i)))
        out += _leaf_paths(node[-1], (*prefix, "*"))
    elif isinstance(node, str):
        out.append(prefix)
    return out


def mark(s: str | bytes) -> str | bytes:
    return s + "~" if isinstance(s, str) else s + b"~"


@pytest.mark.parametrize("name", FIXTURES)
def test_generated_walkers_do_what_the_closures_do(testdata: Path, name: str) -> None:
    pb = (testdata / f"{name}.pb").read_bytes()
    obj = codec.decode(pb)
    paths = sorted(set(_leaf_paths(obj)))[:400]
    av, kind, raw = _api._split_envelope(pb)
    mname = _api._message_for(av, kind)
    generated = _redact._generated_walker(mname, _redact._trie(paths))
    closures = _redact._message_walker(mname, _redact._trie(paths))
    assert (generated is None) == (closures is None)
    if generated is None or closures is None:
        return
    a = _api._parse_typed(mname, raw, name)
    b = _api._parse_typed(mname, raw, name)
    assert generated(a, mark) == closures(b, mark)
    assert a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)


def test_walkers_are_cached_by_content_not_by_list_identity() -> None:
    value = codec.encode(pod(a="1", b="2"))
    paths = [("metadata", "annotations", "a")]
    assert codec.redact(value, paths, lambda s: "x")[1] == 1
    paths[0] = ("metadata", "annotations", "b")  # the same list, other content
    out, n = codec.redact(value, paths, lambda s: "y")
    assert n == 1 and codec.decode(out)["metadata"]["annotations"] == {"a": "1", "b": "y"}
    same = (("metadata", "annotations", "a"),)
    parsed = codec.parse(value)
    assert codec.redact_parsed(parsed, same, lambda s: "z") == 1
    assert codec.redact_parsed(parsed, same, lambda s: "z") == 0
    assert codec.to_dict(parsed)["metadata"]["annotations"] == {"a": "z", "b": "2"}


# ---------------------------------------------------------------- peek through the quick split


def test_peek_agrees_with_decode_on_every_form() -> None:
    value = codec.encode(pod())
    want = codec.Meta("v1", "Pod", "u", "ns", "p", "")
    for form in (value, bytearray(value), memoryview(value)):
        assert codec.peek(form) == want  # type: ignore[arg-type]
    raw = _api._split_envelope(value)[2]
    broken = codec.wrap("v1", "Pod", raw[:-3])
    with pytest.raises(TruncatedValueError) as from_decode:
        codec.decode(broken)
    with pytest.raises(TruncatedValueError) as from_peek:
        codec.peek(broken)
    assert from_peek.value.message == from_decode.value.message
    with pytest.raises(DecodeError, match=r"^not a Kubernetes object: neither JSON nor the k8s protobuf envelope$"):
        codec.peek(b"k9s\x00")
