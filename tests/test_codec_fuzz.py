"""Hypothesis: mutated fixture bytes and mangled dicts; only the codec's own errors may escape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tattler_etcd import codec
from tattler_etcd.errors import CodecError, EncodeError
from tests.conftest import TESTDATA

NAMES = sorted(p.name[:-3] for p in TESTDATA.glob("*.pb")) if TESTDATA.is_dir() else []
# A spread of shapes, kept small so the suite stays fast.
PICK = [n for n in NAMES if n.split(".")[-1] in
        ("Pod", "Secret", "ConfigMap", "WatchEvent", "Node", "Deployment", "CustomResourceDefinition",
         "ValidatingAdmissionPolicy", "ResourceSlice", "Event", "Status")] or NAMES[:5]

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(PICK))
    data = bytearray((TESTDATA / f"{name}.pb").read_bytes())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "set"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
    return bytes(data)


def only_codec_errors(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except CodecError:
        return None


@pytest.mark.skipif(not PICK, reason="no test data")
@SETTINGS
@given(value=mutated())
def test_mutated_values_decode_or_raise_codec_errors(value: bytes) -> None:
    out = only_codec_errors(codec.decode, value)
    if out is not None:
        assert isinstance(out, dict)
        json.dumps(out)  # JSON-shaped: no bytes, no upb objects
        # what decodes re-encodes (possibly differently, when the mutation made it non-canonical)
        only_codec_errors(codec.encode, out)
    meta = only_codec_errors(codec.peek, value)
    if meta is not None:
        assert all(isinstance(x, str) for x in (meta.api_version, meta.kind, meta.uid, meta.name))
    only_codec_errors(codec.redact, value, [("spec", "containers", "*", "env", "*", "value"), ("data", "*")],
                      lambda s: "x" if isinstance(s, str) else b"x")
    only_codec_errors(codec.decode_watch_event, value)
    only_codec_errors(codec.split_list, value)


@given(value=st.binary(max_size=64))
@SETTINGS
def test_random_bytes_raise_codec_errors(value: bytes) -> None:
    for v in (value, codec.MAGIC + value, b"k8s:enc:" + value):
        only_codec_errors(codec.decode, v)
        only_codec_errors(codec.peek, v)


JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                      st.text(max_size=8), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def mangle(obj: Any, draw: st.DrawFn, depth: int = 0) -> Any:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if draw(st.integers(0, 20)) == 0:
                out[k] = draw(JSON_LEAF)
            elif depth < 6:
                out[k] = mangle(v, draw, depth + 1)
            else:
                out[k] = v
        return out
    if isinstance(obj, list):
        return [mangle(x, draw, depth + 1) for x in obj]
    return obj


@st.composite
def mangled_dicts(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(PICK))
    obj = json.loads((TESTDATA / f"{name}.json").read_text())
    out = mangle(obj, draw)
    assert isinstance(out, dict)
    return out


@pytest.mark.skipif(not PICK, reason="no test data")
@SETTINGS
@given(obj=mangled_dicts())
def test_mangled_dicts_encode_or_raise_encode_error(obj: dict[str, Any]) -> None:
    try:
        value = codec.encode(obj)
    except EncodeError:
        return
    assert value.startswith(codec.MAGIC)
    assert isinstance(codec.decode(value), dict)


def test_fuzz_inputs_exist(testdata: Path) -> None:
    assert len(PICK) >= 5
