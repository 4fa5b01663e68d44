"""JSON out: orjson's speed, with exactly the bytes ``json.dumps`` wrote before."""

from __future__ import annotations

import dataclasses
import datetime
import gc
import io
import json
import math
import random
import struct
from pathlib import Path
from typing import Any

import pytest

from tattler_etcd import codec, jsonout
from tattler_etcd.cli import main
from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.pipeline import Batch, JsonLinesProcessor

FIXTURES = Path(__file__).parent / "data" / "k8s-api" / "HEAD"
PB_FIXTURES = sorted(FIXTURES.glob("*.pb"))


def stdlib(value: Any) -> bytes:
    """What every JSON line was before orjson: the reference text."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_from(value: bytes, **kw: Any) -> Entry:
    return Entry.from_value(value, change=ChangeType.ADD, source=SourceType.ETCD, key="/registry/x", **kw)


@pytest.mark.parametrize("path", PB_FIXTURES, ids=lambda p: p.stem)
def test_every_fixture_is_written_byte_for_byte_as_json_dumps_wrote_it(path: Path) -> None:
    value = path.read_bytes()
    doc = codec.decode(value)
    assert jsonout.dumps(doc) == stdlib(doc)
    # The JSON as served (a different key order and nulls here and there) too.
    served = json.loads(path.with_suffix(".json").read_bytes())
    assert jsonout.dumps(served) == stdlib(served)
    entry = entry_from(value, resource_version="42")
    line = entry.to_json_bytes()
    assert line == stdlib(entry.to_json_dict())
    assert entry.to_json() == line.decode("utf-8")


def test_fixtures_are_there() -> None:
    assert len(PB_FIXTURES) > 150


def test_the_bundled_replay_writes_the_same_bytes_as_with_json_dumps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast = tmp_path / "orjson.jsonl"
    assert main(["run", "-o", str(fast)]) == 0
    from tattler_etcd import data

    monkeypatch.setattr(data, "_dumps", stdlib)
    slow = tmp_path / "stdlib.jsonl"
    assert main(["run", "-o", str(slow)]) == 0
    assert fast.read_bytes().count(b"\n") > 10
    assert fast.read_bytes() == slow.read_bytes()


def _random_floats(n: int) -> list[float]:
    rnd = random.Random(13)
    out: list[float] = []
    while len(out) < n:
        x = struct.unpack("<d", rnd.getrandbits(64).to_bytes(8, "little"))[0]
        if not (math.isnan(x) or math.isinf(x)):
            out.append(x)
    for e in range(-12, 20):  # every exponent around where repr changes notation
        out += [10.0**e, -(10.0**e), 1.2345 * 10.0**e, 9.999999 * 10.0**e]
    return out


def test_floats_are_written_as_repr_writes_them() -> None:
    # orjson writes 0 < |x| < 1e-4 unlike repr (0.00001, 1e-7); those go to the standard library.
    for x in _random_floats(20_000):
        for value in (x, [x], {"a": x}, {"a": [1, x], "b": "1e-7,"}, [x, x]):
            assert jsonout.dumps(value) == stdlib(value), value


def test_strings_that_look_like_small_floats_are_only_slower() -> None:
    for s in ["1e-7", "0.00001", ":1e-7,", "[0.00001]", "kube-4", "node-1e-5]", "a:-0.0000"]:
        assert jsonout.dumps({"name": s, "list": [s]}) == stdlib({"name": s, "list": [s]})


@pytest.mark.parametrize("value", [
    {"big": 2**64}, {"neg": -(2**70)}, {1: "int key"}, {"esc": "\x00\x1f\x7f\u2028\"\\/\b\f\n\r\t\U0001f600é"},
    {"nested": [[], {}, [{}], None, True, False, 0, -1, 2**63 - 1]},
], ids=["big-int", "big-negative", "int-key", "escapes", "nested"])
def test_what_orjson_refuses_or_might_write_differently_matches(value: Any) -> None:
    assert jsonout.dumps(value) == stdlib(value)


def test_subclasses_and_non_json_types_go_to_the_standard_library() -> None:
    class Name(str):
        pass

    assert jsonout.dumps({"n": Name("x")}) == b'{"n":"x"}'

    @dataclasses.dataclass
    class D:
        a: int

    for bad in (datetime.datetime(2024, 1, 1), D(1), {1, 2}):
        with pytest.raises(TypeError):
            jsonout.dumps({"x": bad})


def test_a_lone_surrogate_is_escaped_not_a_failed_write() -> None:
    value = json.loads('{"s":"a\\ud800b"}')
    assert jsonout.dumps(value) == b'{"s":"a\\ud800b"}'
    assert json.loads(jsonout.dumps(value)) == value


def test_nan_is_null() -> None:
    # The one documented difference: json.dumps wrote the invalid token NaN.
    assert jsonout.dumps([math.nan, math.inf, -math.inf]) == b"[null,null,null]"


# -- Entry.to_json_bytes and the JSON-lines processor --------------------------


def _pod_value() -> bytes:
    return (FIXTURES / "core.v1.Pod.pb").read_bytes()


def test_to_json_bytes_does_not_keep_the_decoded_dict() -> None:
    entry = entry_from(_pod_value(), resource_version="7")
    line = entry.to_json_bytes()
    assert not entry.has_raw()
    assert json.loads(line)["object"]["metadata"]["resourceVersion"] == "7"
    assert entry.to_json_bytes() == line
    # The dict, once somebody builds it, is what is written (it may be edited in place).
    entry.raw["metadata"]["name"] = "renamed"
    assert json.loads(entry.to_json_bytes())["object"]["metadata"]["name"] == "renamed"
    entry.replace_value(_pod_value())
    assert entry.to_json_bytes() == line
    # The identity fields are written as they are now.
    entry.change = ChangeType.DELETE
    assert json.loads(entry.to_json_bytes())["change"] == "delete"


def test_a_written_batch_holds_no_decoded_objects() -> None:
    import trio

    trio.run(JsonLinesProcessor(io.BytesIO()), Batch([entry_from(_pod_value())]))  # converters made once
    batch = Batch([entry_from(_pod_value()) for _ in range(3)])
    buf = io.BytesIO()
    gc.collect()
    before = len(gc.get_objects())
    trio.run(JsonLinesProcessor(buf), batch)
    gc.collect()
    # A decoded Pod fixture is ~380 dicts and lists; three of them kept would be ~1,100.
    assert len(gc.get_objects()) - before < 200
    assert not any(e.has_raw() for e in batch)
    assert buf.getvalue().count(b"\n") == 3


@pytest.mark.parametrize("kind", ["binary", "text-file", "stringio"])
async def test_json_lines_writes_the_same_bytes_to_any_stream(kind: str, tmp_path: Path) -> None:
    entries = [entry_from(_pod_value(), resource_version=str(i)) for i in range(3)]
    expected = b"".join(stdlib(e.to_json_dict()) + b"\n" for e in entries)
    entries = [entry_from(_pod_value(), resource_version=str(i)) for i in range(3)]
    path = tmp_path / "out.jsonl"
    if kind == "binary":
        with open(path, "wb") as f:
            await JsonLinesProcessor(f)(Batch(entries))
    elif kind == "text-file":
        with open(path, "w", encoding="utf-8") as f:
            f.write("pending text goes first\n")
            await JsonLinesProcessor(f, flush=False)(Batch(entries))
        expected = b"pending text goes first\n" + expected
    else:
        buf = io.StringIO()
        await JsonLinesProcessor(buf)(Batch(entries))
        path.write_bytes(buf.getvalue().encode("utf-8"))
    assert path.read_bytes() == expected


# -- the C scan (tattler_etcd/_jsonscan.c) and its pure-Python fallback ---------


def _scans() -> list[Any]:
    scans: list[Any] = [jsonout._small_float]
    try:
        from tattler_etcd._jsonscan import small_float
    except ImportError:
        import os

        assert not os.environ.get("CI"), "CI builds the C scan (pip install -e .)"
    else:
        scans.append(small_float)
    return scans


@pytest.mark.parametrize("scan", _scans(), ids=lambda f: f.__module__ or "c")
def test_floats_are_exact_with_either_scan(scan: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonout, "_scan", scan)
    for x in _random_floats(5_000):
        for value in (x, [x], {"a": x, "b": "1e-7,"}):
            assert jsonout.dumps(value) == stdlib(value), value
    for s in ["1e-7", "0.00001", ":1e-7,", "[0.00001]", "kube-4", "node-1e-5]", "a:-0.0000", "x-1e-5}"]:
        assert jsonout.dumps({"name": s, "l": [s]}) == stdlib({"name": s, "l": [s]})


def test_the_c_scan_flags_whatever_the_python_scan_flags() -> None:
    scans = _scans()
    if len(scans) == 1:
        pytest.skip("the C scan is not built")
    python, c = scans
    samples = [orjson_dumps(v) for v in (
        *_random_floats(3_000), {"a": "kube-4"}, {"a": "9a4e-3f7b"}, [1e-7, "x"], {"e": 1.5e-6}, -1e-5,
    )]
    samples += [p.with_suffix(".json").read_bytes() for p in PB_FIXTURES[:40]]
    for b in samples:
        if python(b):
            assert c(b), b
    assert c(b"[1e-7]") and c(b'{"a":-0.00001}') and not c(b'{"a":"kube-4"}') and not c(b"1e-10")


def orjson_dumps(value: Any) -> bytes:
    import orjson

    return orjson.dumps(value)
