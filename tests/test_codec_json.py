"""The C JSON emitter (``codec.json_bytes``) writes exactly what the dict path writes, or leaves the value to it.

The reference is today's text: ``jsonout.dumps(codec.decode(value))``, with
``metadata.resourceVersion`` replaced as :meth:`Entry._decode` does, decoded
by the C decoder and by the pure-Python converter.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tattler_etcd import codec, jsonout
from tattler_etcd.codec import _fast
from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.errors import CodecError
from tests.conftest import TESTDATA
from tests.test_codec_fuzz import mutated

DATA = Path(__file__).parent / "data" / "k8s-api"
FIXTURES = sorted(DATA.glob("*/*.pb"))

pytestmark = pytest.mark.skipif(
    not _fast.AVAILABLE and not os.environ.get("CI"),
    reason="the C decoder is not built (no compiler at install); CI builds it",
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture
def c_on() -> Iterator[None]:
    was = _fast.enabled()
    _fast.set_enabled(True)
    try:
        yield
    finally:
        _fast.set_enabled(was)


def reference(value: bytes, rv: str | None = None, *, c_decoder: bool = True) -> bytes | type[Exception]:
    """What the writers wrote before the emitter: jsonout.dumps of the decoded dict (or the error's type)."""
    was = _fast.enabled()
    _fast.set_enabled(c_decoder)
    try:
        obj = codec.decode(value)
    except CodecError as exc:
        return type(exc)
    finally:
        _fast.set_enabled(was)
    if rv:
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            meta["resourceVersion"] = rv
    return jsonout.dumps(obj)


def emitted(value: bytes, rv: str | None = None) -> bytes | None:
    was = _fast.enabled()
    _fast.set_enabled(True)
    try:
        return codec.json_bytes(value, rv)
    finally:
        _fast.set_enabled(was)


def check(value: bytes, rv: str | None = None) -> bytes | None:
    """The emitter's text (None: it bailed) after checking it against both decoders' reference."""
    got = emitted(value, rv)
    if got is not None:
        assert got == reference(value, rv, c_decoder=True)
        assert got == reference(value, rv, c_decoder=False)
    return got


# -- every fixture, with and without the resourceVersion override ---------------------------------


def test_the_fixtures_are_there() -> None:
    assert len(FIXTURES) > 190
    assert {p.parent.name for p in FIXTURES} >= {"HEAD", "v1.21.0", "v1.23.0"}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
@pytest.mark.parametrize("rv", [None, "", "123456", "é\"\\\n"], ids=["no-rv", "empty-rv", "rv", "odd-rv"])
def test_every_fixture_is_written_as_the_dict_path_writes_it(path: Path, rv: str | None) -> None:
    got = check(path.read_bytes(), rv)
    if path.stem.endswith(".WatchEvent"):
        assert got is None  # no kind: left to the dict path, as the decoder leaves it
    else:
        assert got is not None, "the emitter left a fixture to the dict path (its speed would be an illusion)"


def test_the_override_lands_in_metadata() -> None:
    value = (TESTDATA / "core.v1.Pod.pb").read_bytes()
    got = emitted(value, "424242")
    assert got is not None
    assert json.loads(got)["metadata"]["resourceVersion"] == "424242"
    assert json.loads(got) != json.loads(emitted(value) or b"")


def test_turned_off_it_is_not_used() -> None:
    value = (TESTDATA / "core.v1.Pod.pb").read_bytes()
    was = _fast.enabled()
    _fast.set_enabled(False)
    try:
        assert codec.json_bytes(value) is None
    finally:
        _fast.set_enabled(was)


@pytest.mark.parametrize("value", [b"", b"k8s\x00", b'{"kind": "X"}', b"nope", b"k8s\x00\x0a\x02\x0a\x00"])
def test_what_is_not_a_protobuf_object_is_left_to_the_dict_path(value: bytes) -> None:
    assert emitted(value) is None


# -- hand-made wire bytes: strings, maps, bytes, embedded JSON ------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def ld(number: int, payload: bytes | str) -> bytes:
    """A length-delimited field."""
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def vi(number: int, n: int) -> bytes:
    """A varint field."""
    return _varint(number << 3) + _varint(n % (1 << 64))


def entry(key: bytes | str, val: bytes | str) -> bytes:
    return ld(1, key) + ld(2, val)


def config_map(*fields: bytes, meta: bytes = ld(1, "cm") + ld(3, "ns")) -> bytes:
    """A v1 ConfigMap: metadata 1, data 2 (map), binaryData 3 (map of bytes), immutable 4."""
    return codec.wrap("v1", "ConfigMap", ld(1, meta) + b"".join(fields))


def revision(raw_json: bytes, number: int = 3) -> bytes:
    """An apps/v1 ControllerRevision whose data (a RawExtension) holds ``raw_json``."""
    return codec.wrap("apps/v1", "ControllerRevision", ld(1, ld(1, "r")) + ld(2, ld(1, raw_json)) + vi(3, number))


ALL_CHARS = "".join(chr(i) for i in range(0x80)) + "é€\u2028\u2029\ufeff\U0001f600\x7f"


@pytest.mark.parametrize("text", [
    ALL_CHARS, "", '"', "\\", "\\u0000", "a\"b\\c\nd\re\tf\bg\fh\x00i\x1fj", "\u2028", "日本語", "\U0010ffff",
])
def test_strings_are_escaped_as_json_dumps_escapes_them(text: str) -> None:
    value = config_map(ld(2, entry("k", text)), meta=ld(1, text) + ld(3, "ns") + ld(11, entry(text, text)))
    assert check(value) is not None
    assert check(value, "7") is not None


@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"a\x80"])
def test_invalid_utf8_is_left_to_the_dict_path(bad: bytes) -> None:
    assert emitted(config_map(ld(2, entry("k", bad)))) is None
    assert emitted(config_map(ld(2, entry(bad, "v")))) is None
    assert emitted(config_map(meta=ld(1, bad))) is None
    assert isinstance(reference(config_map(ld(2, entry("k", bad)))), bytes)  # the dict path repairs it


def test_maps_come_out_sorted_with_the_last_of_equal_keys() -> None:
    value = config_map(ld(2, entry("b", "1")), ld(2, entry("a", "2")), ld(2, entry("b", "3")),
                       ld(2, entry("ab", "4")), ld(2, entry("", "5")), ld(2, entry("é", "6")), ld(2, entry("z", "7")))
    got = check(value)
    assert got is not None
    assert list(json.loads(got)["data"].items()) == [("", "5"), ("a", "2"), ("ab", "4"), ("b", "3"), ("z", "7"),
                                                     ("é", "6")]


def test_map_entries_without_key_or_value_and_empty_maps() -> None:
    assert check(config_map(ld(2, ld(1, "only-key")), ld(2, ld(2, "only-value")), ld(2, b""))) is not None
    assert check(config_map(ld(3, ld(1, "k")), ld(3, ld(2, b"\x00\xff")))) is not None
    assert check(config_map(meta=ld(1, "x"))) is not None  # no map at all: null or left out, per field


@pytest.mark.parametrize("data", [b"", b"a", b"ab", b"abc", b"abcd", bytes(range(256))])
def test_bytes_are_base64(data: bytes) -> None:
    assert check(config_map(ld(3, entry("k", data)))) is not None


def test_a_scalar_met_twice_on_the_wire_is_left_to_the_dict_path() -> None:
    assert emitted(config_map(vi(4, 1), vi(4, 0))) is None
    assert emitted(config_map(ld(2, entry("k", "v")))) is not None


@pytest.mark.parametrize("raw_json", [
    b'{"a":1,"b":[1,2.5,-0.0,1e-7,1e+16,1.0,123456789012345678901234567890],"c":null,"d":true,"e":false}',
    b'  { "spaced" : [ 1 , 2 ] ,\n "x" : "y" }  ',
    b'{"dup":1,"other":2,"dup":3}',
    b'{"esc":"\\u00e9\\n\\"\\\\\\u2028\\u003c","\\u0041":"\\ud83d\\ude00"}',
    b'[1, 0.0001, 0.00001, 5e-324, 1.7976931348623157e308, -1, -0]',
    b'"just a string"', b"12", b"null", b"{}", b"[]", b"true", b"false", b" \t\r\n[ ] ",
    b'{"a":{"b":{"c":{"d":[[[[{}]]]]}}}}',
    b"[1E5, 1e-400, -0.0, 2.50, 0e0, -0, 10, 1.5E+3, 123456789.123456789e-3]",
    b'["\\u0000\\u001f\\u007f\\/\\b\\f\\t", "\\uD83D\\uDE00", "\x7f", "\xc3\xa9", "\xe2\x80\xa8"]',
    b'{"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":{}}',
    b'{"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k1":{}}',
    b'{"\\u0061":1,"a":2}',  # the same key, written two ways
    b'{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"k:{\\"type\\":\\"Ready\\"}":{".":{}}}',
    b"\xef\xbb\xbf{}",  # a byte-order mark: json.loads reads it
])
def test_embedded_json_is_the_compact_redump(raw_json: bytes) -> None:
    assert check(revision(raw_json)) is not None


@pytest.mark.parametrize("raw_json", [
    b"", b" ", b"{", b"[1,]", b"01", b"-", b"2.", b".5", b"1e", b'"\\x"', b'"\\ud800"', b'"\\udc00x"', b'"a\nb"',
    b'{"a" 1}', b"[1] 2", b"nul", b"\x00", b'"\xff"', b"1e400", b"-Infinity",
])
def test_embedded_json_python_refuses_or_writes_otherwise_is_left_to_the_dict_path(raw_json: bytes) -> None:
    assert emitted(revision(raw_json)) is None


@pytest.mark.parametrize("raw_json", [b'{"x":NaN}', b"[Infinity]", b'{"s":"\\ud800"}'])
def test_embedded_json_jsonout_writes_otherwise_is_left_to_the_dict_path(raw_json: bytes) -> None:
    assert emitted(revision(raw_json)) is None
    assert isinstance(reference(revision(raw_json)), bytes)


def test_an_embedded_object_in_the_storage_encoding() -> None:
    inner = (TESTDATA / "core.v1.Pod.pb").read_bytes()
    assert check(revision(inner)) is not None


def test_bad_embedded_json_is_left_to_the_dict_path_which_raises() -> None:
    assert emitted(revision(b"{nope")) is None
    assert not isinstance(reference(revision(b"{nope")), bytes)


@pytest.mark.parametrize("number", [0, 1, -1, 2**63 - 1, -(2**63)])
def test_integers(number: int) -> None:
    assert check(revision(b"{}", number)) is not None


# -- hypothesis ----------------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(["", "a", "\u2028", "\x00", '"\\'])


@SETTINGS
@given(
    data=st.lists(st.tuples(_text, _text), max_size=8),
    labels=st.lists(st.tuples(_text, _text), max_size=5),
    name=_text,
    immutable=st.sampled_from([None, 0, 1]),
    rv=st.sampled_from([None, "", "1", "99"]),
)
def test_random_config_maps(data: list[tuple[str, str]], labels: list[tuple[str, str]], name: str,
                            immutable: int | None, rv: str | None) -> None:
    meta = ld(1, name) + b"".join(ld(11, entry(k, v)) for k, v in labels)
    fields = [ld(2, entry(k, v)) for k, v in data]
    if immutable is not None:
        fields.append(vi(4, immutable))
    assert check(config_map(*fields, meta=meta), rv) is not None


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


@SETTINGS
@given(doc=_json, indent=st.sampled_from([None, 1]))
def test_random_embedded_json(doc: Any, indent: int | None) -> None:
    raw = json.dumps(doc, indent=indent, ensure_ascii=indent is None).encode()
    assert check(revision(raw)) is not None


@SETTINGS
@given(value=mutated(), rv=st.sampled_from([None, "5"]))
def test_mutated_values_are_written_as_the_dict_path_writes_them_or_left_to_it(value: bytes, rv: str | None) -> None:
    check(value, rv)


# -- the Entry and the writer --------------------------------------------------------------------


def _entry(value: bytes, rv: str = "77") -> Entry:
    return Entry.from_value(value, change=ChangeType.UPDATE, source=SourceType.ETCD, key="/registry/x",
                            resource_version=rv)


def old_line(entry: Entry) -> bytes:
    """to_json_bytes as it was before the emitter: head and dict, each through jsonout."""
    was = _fast.enabled()
    _fast.set_enabled(False)
    try:
        obj = entry._decode()
    finally:
        _fast.set_enabled(was)
    return jsonout.dumps(entry.to_json_dict() | {"object": obj})


@pytest.mark.parametrize("path", [p for p in FIXTURES if not p.stem.endswith(".WatchEvent")][::7],
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_entry_lines_are_unchanged(path: Path, c_on: None) -> None:
    value = path.read_bytes()
    e = _entry(value)
    line = e.to_json_bytes()
    assert e._line is not None and not e.has_raw()  # written by C, no dict built
    assert line == old_line(_entry(value))
    assert e.to_json_bytes() is line  # kept for the next writer
    e.change = ChangeType.DELETE  # the head changed: written again
    assert e.to_json_bytes() == old_line(e)
    assert json.loads(e.to_json_bytes())["change"] == "delete"


def test_an_entry_with_a_dict_or_new_bytes_is_written_from_them(c_on: None) -> None:
    value = (TESTDATA / "core.v1.Pod.pb").read_bytes()
    e = _entry(value)
    e.to_json_bytes()
    e.raw["metadata"]["name"] = "edited"
    assert json.loads(e.to_json_bytes())["object"]["metadata"]["name"] == "edited"
    e.replace_value((TESTDATA / "core.v1.ConfigMap.pb").read_bytes())
    assert json.loads(e.to_json_bytes())["object"]["kind"] == "ConfigMap"


# -- what must not bail: the speed is in the emitter, not in its fallback ------------------------


def realistic_pod() -> dict[str, Any]:
    """A controller-made Pod as etcd holds it: managedFields, probes, quantities, status with times."""
    ts = "2024-05-01T10:00:00Z"
    fields = {"f:metadata": {"f:labels": {".": {}, "f:app": {}}, "f:ownerReferences": {
        ".": {}, 'k:{"uid":"9a4e3f7b-0000-4000-8000-000000000001"}': {}}},
        "f:spec": {"f:containers": {'k:{"name":"web"}': {".": {}, "f:image": {}, "f:ports": {
            ".": {}, 'k:{"containerPort":8080,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}}}}}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "web-7d9c-abcde", "generateName": "web-7d9c-", "namespace": "shop",
            "uid": "0b1c2d3e-0000-4000-8000-000000000002", "creationTimestamp": ts,
            "labels": {"app": "web", "pod-template-hash": "7d9c"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": ts},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c",
                                 "uid": "9a4e3f7b-0000-4000-8000-000000000001", "controller": True,
                                 "blockOwnerDeletion": True}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                               "time": ts, "fieldsType": "FieldsV1", "fieldsV1": fields}],
        },
        "spec": {
            "containers": [{
                "name": "web", "image": "registry.example.com/web:1.2.3", "args": ["--port", "8080"],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": f"ENV_{i}", "value": f"value-{i}"} for i in range(5)],
                "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m"}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"}},
                "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent",
            }],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "nodeName": "node-17",
            "securityContext": {"runAsNonRoot": True},
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}],
        },
        "status": {
            "phase": "Running", "hostIP": "10.0.3.17", "podIP": "10.244.3.21", "podIPs": [{"ip": "10.244.3.21"}],
            "startTime": ts, "qosClass": "Burstable",
            "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": ts}],
            "containerStatuses": [{"name": "web", "state": {"running": {"startedAt": ts}}, "ready": True,
                                   "restartCount": 0, "image": "registry.example.com/web:1.2.3", "started": True}],
        },
    }


@pytest.fixture
def python_calls(c_on: None) -> Iterator[list[str]]:
    """What the emitter asked Python for (embedded JSON, times it does not format itself)."""
    from tattler_etcd.codec import _convert, _gotime
    from tattler_etcd.codec._fast import _cdecode

    calls: list[str] = []

    def spy(name: str, fn: Any) -> Any:
        def call(*args: Any) -> Any:
            calls.append(name)
            return fn(*args)
        return call

    _cdecode.configure(spy("time", _gotime.format_time), spy("microtime", _gotime.format_micro_time),
                       spy("duration", _gotime.format_duration), spy("embedded", _convert._embedded), _convert._b64s)
    try:
        yield calls
    finally:
        _cdecode.configure(_gotime.format_time, _gotime.format_micro_time, _gotime.format_duration,
                           _convert._embedded, _convert._b64s)


def test_a_realistic_pod_is_written_in_c_alone(python_calls: list[str]) -> None:
    value = codec.encode(realistic_pod())
    assert emitted(value, "12345") is not None
    assert python_calls == []  # managedFields' JSON and every time written in C
    assert check(value, "12345") is not None


COMMON = ("Pod", "ConfigMap", "Secret", "Service", "Endpoints", "Node", "Namespace", "Event", "Deployment",
          "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob", "Lease", "EndpointSlice", "ServiceAccount")


@pytest.mark.parametrize("path", [p for p in FIXTURES if p.stem.split(".")[-1] in COMMON],
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_common_kinds_are_written_without_python(path: Path, python_calls: list[str]) -> None:
    assert emitted(path.read_bytes(), "1") is not None
    assert python_calls == []
    assert check(path.read_bytes(), "1") is not None


def test_a_lone_surrogate_in_the_override_or_the_head_is_left_to_the_dict_path(c_on: None) -> None:
    value = (TESTDATA / "core.v1.ConfigMap.pb").read_bytes()
    assert emitted(value, "\ud800") is None
    assert codec.json_bytes(value, None, {"name": "\udc00"}) is None
    head = {"change": "add", "namespace": None, "name": "é\n"}
    line = codec.json_bytes(value, None, head)
    assert line == jsonout.dumps({**head, "object": codec.decode(value)})
