"""The optional C decoder gives exactly what the pure-Python converter gives, or leaves the value to it."""

from __future__ import annotations

import json
import os
import shutil
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tattler_etcd import codec
from tattler_etcd.codec import _api, _fast
from tattler_etcd.errors import CodecError
from tests.conftest import TESTDATA
from tests.test_codec_fuzz import mutated

FIXTURES = sorted(TESTDATA.glob("*.pb"))

def _can_build() -> bool:
    """A C compiler and the Python headers are here: `pip install -e .` builds the modules."""
    include = sysconfig.get_paths().get("include") or ""
    return shutil.which("gcc") is not None and os.path.exists(os.path.join(include, "Python.h"))


pytestmark = pytest.mark.skipif(
    not _fast.AVAILABLE and not _can_build() and not os.environ.get("CI"),
    reason="the C decoder is not built (no compiler or Python headers at install)",
)


def test_the_c_modules_are_built_wherever_they_can_be() -> None:
    # `pip install -e .` (scripts/setup.sh) builds them wherever gcc and the Python headers are.
    # The build is optional, so a C source that stopped compiling (two merges defining the same
    # type, say) leaves the package in pure Python without a word: this is where it shows.
    from tattler_etcd import jsonout

    assert _fast.AVAILABLE, "tattler_etcd.codec._cdecode did not build: run `pip install -e . -v` to see why"
    assert jsonout._scan is not jsonout._small_float, "tattler_etcd._jsonscan did not build"


@pytest.fixture
def pure_python() -> Iterator[None]:
    was = _fast.enabled()
    _fast.set_enabled(False)
    try:
        yield
    finally:
        _fast.set_enabled(was)


def python_decode(value: bytes) -> Any:
    was = _fast.enabled()
    _fast.set_enabled(False)
    try:
        return codec.decode(value)
    except CodecError as exc:
        return type(exc)
    finally:
        _fast.set_enabled(was)


def c_decode(value: bytes) -> dict[str, Any] | None:
    """The C decoder's answer alone (None: it left the value to Python)."""
    api_version, kind, raw = _api._split_envelope(value)
    return _fast.decode(_api._message_for(api_version, kind), raw, kind, api_version)


def same(a: Any, b: Any) -> bool:
    """Equal, key order and types included (True vs 1, 1 vs 1.0)."""
    return json.dumps(a) == json.dumps(b) and a == b


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_every_fixture_decodes_the_same_in_c_and_python(path: Path) -> None:
    value = path.read_bytes()
    got = c_decode(value)
    if path.stem.endswith(".WatchEvent"):
        assert got is None  # no kind: the one type the C path leaves alone
        return
    assert got is not None, "the C decoder left a fixture to Python"
    assert same(got, python_decode(value))
    assert same(codec.decode(value), got)
    # codec.to_dict of a parsed value takes the same path.
    assert same(codec.to_dict(codec.parse(value)), got)


def test_the_fixtures_are_there() -> None:
    assert len(FIXTURES) > 150


def test_turned_off_it_is_not_used(pure_python: None) -> None:
    value = (TESTDATA / "core.v1.Pod.pb").read_bytes()
    assert c_decode(value) is None
    assert codec.decode(value)["kind"] == "Pod"


def _pod() -> bytes:
    return (TESTDATA / "core.v1.Pod.pb").read_bytes()


def _with_field(value: bytes, field: bytes) -> bytes:
    """The envelope's object with ``field`` (wire bytes) appended at its top level."""
    api_version, kind, raw = _api._split_envelope(value)
    return codec.wrap(api_version, kind, raw + field)


@pytest.mark.parametrize("extra", [
    b"\xa8\x06\x01",  # field 101, a varint: unknown (kept under $unknown by Python)
    b"\x0a\x00",  # metadata again: protobuf merges the two
], ids=["unknown-field", "repeated-message"])
def test_what_c_leaves_to_python_still_decodes_as_python_does(extra: bytes) -> None:
    value = _with_field(_pod(), extra)
    assert c_decode(value) is None
    assert same(codec.decode(value), python_decode(value))


def test_invalid_utf8_is_left_to_python_which_repairs_it() -> None:
    value = _pod().replace(b"\tnameValue", b"\tnam\xffValue", 1)
    assert c_decode(value) is None
    doc = codec.decode(value)
    assert doc["metadata"]["name"] == "nam\ufffdValue"
    assert same(doc, python_decode(value))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=mutated())
def test_mutated_values_give_what_python_gives(value: bytes) -> None:
    expected = python_decode(value)
    try:
        got = codec.decode(value)
    except CodecError as exc:
        got = type(exc)
    assert same(got, expected) if isinstance(expected, dict) else got is expected


# -- the unknown-field scan the safety stage asks before parsing -----------------


def upb_has_unknown(value: bytes) -> bool | None:
    """The truth, by upb: parse, drop unknown fields, compare sizes (None: upb refuses the bytes)."""
    from tattler_etcd.codec._schema import SCHEMA

    api_version, kind, raw = _api._split_envelope(value)
    try:
        msg = SCHEMA.message_class(_api._message_for(api_version, kind)).FromString(raw)
    except Exception:  # noqa: BLE001 - any refusal: no truth to compare with
        return None
    before = msg.ByteSize()
    msg.DiscardUnknownFields()
    return msg.ByteSize() != before


def c_has_unknown(value: bytes) -> bool | None:
    api_version, kind, raw = _api._split_envelope(value)
    return _fast.has_unknown(_api._message_for(api_version, kind), raw)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_no_fixture_has_unknown_fields(path: Path) -> None:
    assert c_has_unknown(path.read_bytes()) is False


@pytest.mark.parametrize(("extra", "where"), [
    (b"\xa8\x06\x01", "top"),  # field 101 of Pod
    (b"\x12\x03\xa0\x06\x01", "spec"),  # field 100 inside a second spec (merged)
    (b"\x0a\x04\x10\x00\x10\x00", "type"),  # metadata.generateName (a string) as a varint
], ids=["top-level", "nested", "wrong-wire-type"])
def test_unknown_fields_are_found_at_any_depth(extra: bytes, where: str) -> None:
    value = _with_field(_pod(), extra)
    assert upb_has_unknown(value) is True
    assert c_has_unknown(value) is True
    parsed = codec.parse(value)
    assert codec.drop_unknown(parsed) is True
    assert "$unknown" not in json.dumps(codec.to_dict(parsed))


def test_bytes_that_are_not_protobuf_are_left_to_upb() -> None:
    value = _with_field(_pod(), b"\x0a\x7f\x01")  # a field longer than what is left
    assert c_has_unknown(value) is None


def test_turned_off_the_scan_is_not_used(pure_python: None) -> None:
    assert c_has_unknown(_pod()) is None
    assert codec.drop_unknown(codec.parse(_pod())) is False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=mutated())
def test_mutated_values_no_unknown_only_when_upb_agrees(value: bytes) -> None:
    try:
        found = c_has_unknown(value)
    except CodecError:
        return  # the envelope itself is broken: nothing to scan
    if found is False:
        assert upb_has_unknown(value) in (False, None)
    truth = upb_has_unknown(value)
    if truth is True:
        assert found in (True, None)


# -- redaction on the wire bytes (the safety stage's env values) ------------------


def _leaf(s: str | bytes) -> str | bytes:
    if isinstance(s, bytes):
        return b"R" if s else s
    return "R" if s else s


def _rules_paths(kind: str) -> tuple[tuple[str, ...], ...]:
    from tattler_etcd.pipeline.redaction import default_redactor

    return default_redactor().for_kind(kind).values


def _redact_both(value: bytes, paths: tuple[tuple[str, ...], ...]) -> tuple[Any, Any]:
    """(n, decoded bytes) through the C rewrite and through upb."""
    out = []
    for on in (True, False):
        was = _fast.enabled()
        _fast.set_enabled(on)
        try:
            parsed = codec.parse(value)
            n = codec.redact_parsed(parsed, paths, _leaf)
            out.append((n, python_decode(codec.to_bytes(parsed))))
        except CodecError as exc:
            out.append((type(exc), None))
        finally:
            _fast.set_enabled(was)
    return out[0], out[1]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_every_fixture_is_redacted_alike_in_its_bytes_and_by_upb(path: Path) -> None:
    value = path.read_bytes()
    kind = codec.peek(value).kind
    paths = _rules_paths(kind) + (("metadata", "name"), ("metadata", "ownerReferences", "*", "uid"))
    c, upb = _redact_both(value, paths)
    assert c[0] == upb[0] and same(c[1], upb[1])


def test_the_pod_env_values_take_the_c_rewrite() -> None:
    value = _pod()
    parsed = codec.parse(value)
    done = _fast.redact_raw(parsed._name, _rules_paths("Pod"), parsed._raw, _leaf)
    assert done is not None and done[1] > 0 and done[2] is None
    # A map (Secret data), an index or the list itself: left to upb.
    for paths in ((("metadata", "labels", "*"),), (("spec", "containers", "0", "name"),),
                  (("spec", "containers"),), (("spec", "containers", "*", "args"),)):
        assert _fast.redact_raw(parsed._name, paths, parsed._raw, _leaf) is None
    # Nothing on the paths: the bytes come back as they were.
    parsed = codec.parse(value)
    assert codec.redact_parsed(parsed, _rules_paths("Pod"), lambda s: s) == 0
    assert codec.to_bytes(parsed) is value


def _replace_three_ways(value: bytes, paths: tuple[tuple[str, ...], ...]) -> list[Any]:
    """(n, bytes, delta) for a codec.Replace: inlined in C, called from C, and through upb."""
    out = []
    for on, wrapped in ((True, False), (True, True), (False, False)):
        was = _fast.enabled()
        _fast.set_enabled(on)
        try:
            rep = codec.Replace("REDACTED", b"REDACTED")
            fn: Any = (lambda v, rep=rep: rep(v)) if wrapped else rep  # a plain function is called, never inlined
            parsed = codec.parse(value)
            n = codec.redact_parsed(parsed, paths, fn)
            out.append((n, codec.to_bytes(parsed), rep.delta))
        except CodecError as exc:
            out.append((type(exc), None, None))
        finally:
            _fast.set_enabled(was)
    return out


def _env_pod(*values: str) -> bytes:
    env = [{"name": f"V{i}", "value": v} for i, v in enumerate(values)]
    return codec.encode({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u"},
                         "spec": {"containers": [{"name": "c", "env": env}, {"name": "d", "env": env[::-1]}]}})


@pytest.mark.parametrize("path", [*FIXTURES, None], ids=lambda p: p.stem if p else "env-values")
def test_replace_inlined_in_c_matches_calling_it(path: Path | None) -> None:
    """The C rewrite writes a Replace's constant itself: same bytes, count and delta as calling it, and as upb."""
    value = path.read_bytes() if path else _env_pod("s3cret", "", "REDACTED", "пароль €", "x" * 300)
    paths = _rules_paths(codec.peek(value).kind) + (("metadata", "name"),)
    inlined, called, upb = _replace_three_ways(value, paths)
    assert inlined == called
    assert inlined[0] == upb[0] and inlined[2] == upb[2]
    if inlined[1] is not None:
        assert same(python_decode(inlined[1]), python_decode(upb[1]))
    if path is None:
        parsed = codec.parse(value)  # the C rewrite took it (did not leave it to upb)
        assert _fast.redact_raw(parsed._name, paths, parsed._raw, codec.Replace("R", b"R"), ("R", b"R")) is not None
        # "" and "REDACTED" stay; the name p becomes REDACTED too; delta counts characters.
        assert inlined[0] == 2 * 3 + 1 and inlined[2] == 2 * (2 + 0 + 0 + 0 - 292) + 7


def test_replace_inlined_bails_on_invalid_utf8_as_the_call_does() -> None:
    """Invalid UTF-8: the C rewrite gives up and upb decides, with the same result; the delta stays exact.

    (Calling fn from C before giving up adds to the delta twice; inlined, nothing is added.)
    """
    value = _env_pod("ok", "bad").replace(b"bad", b"b\xffd")
    inlined, called, upb = _replace_three_ways(value, _rules_paths("Pod"))
    assert inlined[:2] == called[:2] == upb[:2]
    assert inlined[2] == upb[2] == 2 * (8 - 2) + 2 * (8 - 3)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=mutated())
def test_mutated_values_are_redacted_alike(value: bytes) -> None:
    try:
        kind = codec.peek(value).kind
    except CodecError:
        return
    c, upb = _redact_both(value, _rules_paths(kind))
    assert c[0] == upb[0]
    assert same(c[1], upb[1]) if isinstance(upb[1], dict) else c[1] == upb[1]
    inlined, called, _upb = _replace_three_ways(value, _rules_paths(kind))
    assert inlined == called


# -- times: written by the C side for years 1-9999, by _gotime otherwise ---------


def _times() -> list[tuple[int, int]]:
    import random

    rnd = random.Random(13)
    edges = [0, -1, 1, 86399, 86400, -86400, 951782400, 951868800, 4102444800, 253402300799, 253402300800,
             -62135596800, -62135596799, -62135596801, -(2**62), 2**62]
    out = [(s, n) for s in edges for n in (0, 1, 999, 1000, 999_999_999)]
    out += [(rnd.randint(-62135596800, 253402300799), rnd.randint(0, 999_999_999)) for _ in range(3000)]
    out += [(rnd.randint(0, 10**9), -1), (5, 1_000_000_000)]
    return out


def test_times_are_written_as_python_writes_them() -> None:
    from tattler_etcd.codec._schema import SCHEMA

    ev = SCHEMA.message_class("k8s.io.api.events.v1.Event")
    for seconds, nanos in _times():
        msg = ev()
        msg.metadata.name = "e"
        msg.metadata.creationTimestamp.seconds = seconds
        msg.eventTime.seconds = seconds
        msg.eventTime.nanos = nanos
        value = codec.wrap("events.k8s.io/v1", "Event", msg.SerializeToString())
        got = c_decode(value)
        want = python_decode(value)
        if got is None:  # left to Python: only where Python cannot write the time either
            assert not isinstance(want, dict), (seconds, nanos)
            continue
        assert (got["metadata"].get("creationTimestamp"), got["eventTime"]) == (
            want["metadata"].get("creationTimestamp"), want["eventTime"]), (seconds, nanos)


def test_a_module_built_for_another_table_layout_is_refused() -> None:
    # A checkout keeps its compiled module across a pull: one built from an older
    # _cdecode.c must not read the new tables (it would crash, not just be wrong).
    import types

    from tattler_etcd.codec import _fast

    stale = types.SimpleNamespace(TABLES_ABI=_fast.TABLES_ABI - 1)
    old, new = _fast.TABLES_ABI - 1, _fast.TABLES_ABI
    with pytest.warns(RuntimeWarning, match=rf"built for table layout {old}, not {new}: using the pure-Python decoder"):
        assert _fast._usable(stale) is False
    with pytest.warns(RuntimeWarning, match=r"built for table layout None"):
        assert _fast._usable(types.SimpleNamespace()) is False
    assert _fast._usable(types.SimpleNamespace(TABLES_ABI=_fast.TABLES_ABI)) is True
    if _fast.AVAILABLE:
        assert _fast._cdecode.TABLES_ABI == _fast.TABLES_ABI
