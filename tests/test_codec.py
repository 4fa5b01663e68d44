"""The Kubernetes codec: conformance with the upstream fixtures, zero values, bad input, partial access."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tattler_etcd import codec
from tattler_etcd.codec._schema import SCHEMA
from tattler_etcd.errors import (
    CodecError,
    DecodeError,
    EncodeError,
    EncryptedValueError,
    TruncatedValueError,
    UnknownKindError,
    ValueTooLargeError,
)
from tests.conftest import TESTDATA

FIXTURES = sorted(p.name[:-3] for p in TESTDATA.glob("*.pb")) if TESTDATA.is_dir() else ["<missing testdata>"]


def load(testdata: Path, name: str) -> tuple[bytes, Any]:
    return (testdata / f"{name}.pb").read_bytes(), json.loads((testdata / f"{name}.json").read_text())


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def ld(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


# ---------------------------------------------------------------- conformance


def test_fixture_count(testdata: Path) -> None:
    assert len(FIXTURES) == 193


@pytest.mark.parametrize("name", FIXTURES)
def test_decode_matches_upstream_json(testdata: Path, name: str) -> None:
    pb, expected = load(testdata, name)
    got = codec.decode(pb)
    assert got == expected
    # keys in the APIServer's order too: the same JSON text
    assert json.dumps(got) == json.dumps(expected)


@pytest.mark.parametrize("name", FIXTURES)
def test_encode_matches_upstream_bytes(testdata: Path, name: str) -> None:
    pb, obj = load(testdata, name)
    assert codec.encode(obj) == pb


@pytest.mark.parametrize("name", FIXTURES)
def test_peek_matches_decode(testdata: Path, name: str) -> None:
    pb, obj = load(testdata, name)
    meta = obj.get("metadata") or {}
    assert codec.peek(pb) == codec.Meta(
        obj.get("apiVersion", ""), obj.get("kind", ""), meta.get("uid", ""),
        meta.get("namespace") or None, meta.get("name", ""), meta.get("resourceVersion", ""),
    )


def test_every_fixture_kind_resolves_through_its_group(testdata: Path) -> None:
    missing = []
    for name in FIXTURES:
        obj = json.loads((testdata / f"{name}.json").read_text())
        if "kind" in obj and SCHEMA.kind_message(obj["apiVersion"], obj["kind"]) is None:
            missing.append(name)
    assert missing == []


# ---------------------------------------------------------------- JSON values


def test_json_values_pass_through() -> None:
    cr = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "uid": "u1"}}
    value = json.dumps(cr).encode() + b"\n"
    assert codec.is_json(value)
    assert codec.decode(value) == cr
    assert codec.peek(value) == codec.Meta("example.com/v1", "Widget", "u1", None, "w", "")


def test_is_json_rejects_protobuf_and_junk(testdata: Path) -> None:
    assert not codec.is_json((testdata / "core.v1.Pod.pb").read_bytes())
    assert not codec.is_json(b"")
    assert not codec.is_json(b"[1, 2]")
    assert codec.is_json(b"  \n{}")


# ---------------------------------------------------------------- zero values (the fixtures fill every field)


def pod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def test_minimal_pod_gets_the_go_defaults() -> None:
    # containers is a non-omitempty slice: null; status is a non-pointer struct: {};
    # creationTimestamp is omitzero: absent; every other ObjectMeta field is omitempty.
    got = codec.decode(codec.encode({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}))
    assert got == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                   "spec": {"containers": None}, "status": {}}


def test_non_pointer_fields_are_written_even_when_zero() -> None:
    # ConfigMap{metadata: ObjectMeta{}}: ObjectMeta's eight non-pointer fields are written
    # (name..resourceVersion as "", generation as 0, creationTimestamp as an empty Time);
    # the maps and the *bool immutable are not.
    meta = b"\x0a\x00\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00"
    raw = ld(1, meta)
    assert codec.encode({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}) == codec.wrap("v1", "ConfigMap", raw)
    assert codec.decode(codec.wrap("v1", "ConfigMap", raw)) == {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}


def test_omitempty_scalars_at_zero_are_omitted() -> None:
    obj = pod(containers=[{"name": "c"}], nodeName="", hostNetwork=False, priority=0)
    got = codec.decode(codec.encode(obj))
    assert "nodeName" not in got["spec"] and "hostNetwork" not in got["spec"]
    # priority is a pointer: present with 0 stays
    assert got["spec"]["priority"] == 0


def test_pointers_present_with_zero_values_are_kept() -> None:
    obj = pod(containers=[{"name": "c"}], terminationGracePeriodSeconds=0,
              automountServiceAccountToken=False, activeDeadlineSeconds=0)
    spec = codec.decode(codec.encode(obj))["spec"]
    assert spec["terminationGracePeriodSeconds"] == 0
    assert spec["automountServiceAccountToken"] is False
    assert spec["activeDeadlineSeconds"] == 0


def test_non_omitempty_scalars_default_to_zero() -> None:
    obj = pod(containers=[{"name": "c", "ports": [{}]}])
    container = codec.decode(codec.encode(obj))["spec"]["containers"][0]
    assert container == {"name": "c", "ports": [{"containerPort": 0}], "resources": {}}


def test_empty_time_is_null_and_omitzero_time_is_absent() -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "creationTimestamp": None},
           "spec": {"containers": None}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    got = codec.decode(codec.encode(obj))
    assert "creationTimestamp" not in got["metadata"]
    assert got["status"]["conditions"] == [
        {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": None}]


def test_empty_maps_and_slices() -> None:
    obj = pod(containers=[], volumes=[])
    obj["metadata"]["labels"] = {}
    got = codec.decode(codec.encode(obj))
    assert "labels" not in got["metadata"]  # omitempty map
    assert got["spec"]["containers"] is None  # non-omitempty slice: nil
    assert "volumes" not in got["spec"]


def test_present_empty_string_is_omitted_only_when_omitempty() -> None:
    # Hand-made bytes: ObjectMeta with name="" (omitempty) written explicitly.
    raw = ld(1, ld(1, b""))
    assert codec.decode(codec.wrap("v1", "Namespace", raw))["metadata"] == {}
    # Container.name is not omitempty: absent still gives ""
    raw = ld(2, ld(2, b""))
    assert codec.decode(codec.wrap("v1", "Pod", raw))["spec"]["containers"] == [{"name": "", "resources": {}}]


def test_special_types_round_trip() -> None:
    obj = pod(containers=[{
        "name": "c",
        "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
        "livenessProbe": {"httpGet": {"port": "http"}, "periodSeconds": 3},
        "readinessProbe": {"tcpSocket": {"port": 8080}},
    }])
    got = codec.decode(codec.encode(obj))
    c = got["spec"]["containers"][0]
    assert c["resources"]["limits"] == {"cpu": "500m", "memory": "1Gi"}
    assert c["livenessProbe"]["httpGet"]["port"] == "http"
    assert c["readinessProbe"]["tcpSocket"]["port"] == 8080
    assert codec.encode(got) == codec.encode(obj)


def test_durations_in_go_form() -> None:
    from tattler_etcd.codec._gotime import format_duration, parse_duration

    for ns, text in [(0, "0s"), (1, "1ns"), (1500, "1.5µs"), (2_000_000, "2ms"), (10**9, "1s"),
                     (90 * 10**9, "1m30s"), (3600 * 10**9, "1h0m0s"), (-1_500_000_000, "-1.5s"),
                     (3_723_000_000_000 + 500_000_000, "1h2m3.5s")]:
        assert format_duration(ns) == text
        assert parse_duration(text) == ns
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


def test_micro_time_keeps_microseconds() -> None:
    ev = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
          "eventTime": "2024-02-29T23:59:59.123456Z"}
    got = codec.decode(codec.encode(ev))
    assert got["eventTime"] == "2024-02-29T23:59:59.123456Z"


def test_bytes_fields_are_padded_base64() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
              "data": {"a": "eA==", "b": ""}, "type": "Opaque"}
    assert codec.decode(codec.encode(secret))["data"] == {"a": "eA==", "b": ""}


# ---------------------------------------------------------------- union across releases


def test_kind_removed_upstream_still_decodes() -> None:
    psp = {"apiVersion": "policy/v1beta1", "kind": "PodSecurityPolicy", "metadata": {"name": "restricted"},
           "spec": {"privileged": False, "runAsUser": {"rule": "MustRunAsNonRoot"},
                    "seLinux": {"rule": "RunAsAny"}, "supplementalGroups": {"rule": "RunAsAny"},
                    "fsGroup": {"rule": "RunAsAny"}}}
    got = codec.decode(codec.encode(psp))
    assert got["spec"]["runAsUser"] == {"rule": "MustRunAsNonRoot"}
    assert got["metadata"] == {"name": "restricted"}


def test_field_removed_upstream_is_kept_only_when_present() -> None:
    # PodResourceClaim.source was removed after 1.30; old objects carry it.
    obj = pod(containers=None, resourceClaims=[{"name": "gpu", "source": {"resourceClaimName": "c"}}])
    got = codec.decode(codec.encode(obj))
    assert got["spec"]["resourceClaims"] == [{"name": "gpu", "source": {"resourceClaimName": "c"}}]
    got = codec.decode(codec.encode(pod(containers=None, resourceClaims=[{"name": "gpu"}])))
    assert got["spec"]["resourceClaims"] == [{"name": "gpu"}]


# ---------------------------------------------------------------- unknown fields


def test_unknown_fields_are_kept_counted_and_written_back(testdata: Path) -> None:
    pb = (testdata / "core.v1.ConfigMap.pb").read_bytes()
    env_typed = codec.decode(pb)
    extra = ld(999, b"from the future") + varint(1000 << 3) + varint(7)
    raw = codec.encode(env_typed)
    # the typed object is the envelope's field 2: rebuild it with the extra fields appended
    inner = _raw_of(raw) + extra
    value = codec.wrap("v1", "ConfigMap", inner)
    before = codec.counters["codec.unknown_fields"]
    got = codec.decode(value)
    assert codec.counters["codec.unknown_fields"] == before + 2
    assert codec.UNKNOWN_KEY in got
    assert {k: v for k, v in got.items() if k != codec.UNKNOWN_KEY} == env_typed
    assert codec.encode(got) == value


def _raw_of(value: bytes) -> bytes:
    from tattler_etcd.codec._api import _envelope

    return bytes(_envelope(value).raw)


def test_unknown_field_in_a_nested_message(testdata: Path) -> None:
    meta = ld(1, b"n") + ld(77, b"?")
    value = codec.wrap("v1", "Namespace", ld(1, meta))
    got = codec.decode(value)
    assert got["metadata"]["name"] == "n"
    assert codec.UNKNOWN_KEY in got["metadata"]


# ---------------------------------------------------------------- bad input


def test_truncated_value(testdata: Path) -> None:
    pb = (testdata / "core.v1.Pod.pb").read_bytes()
    for cut in (5, 40, len(pb) // 2, len(pb) - 3):
        with pytest.raises(TruncatedValueError, match=r"end inside a field"):
            codec.decode(pb[:cut])


def test_random_bytes() -> None:
    with pytest.raises(DecodeError, match=r"^not a Kubernetes object: neither JSON nor the k8s protobuf envelope$"):
        codec.decode(b"\x00\x01\x02garbage")


def test_unknown_kind_names_it() -> None:
    value = codec.wrap("example.com/v1", "Gadget", b"")
    with pytest.raises(UnknownKindError, match=r"^no schema for apiVersion 'example.com/v1' kind 'Gadget'$") as info:
        codec.decode(value)
    assert (info.value.api_version, info.value.kind) == ("example.com/v1", "Gadget")
    with pytest.raises(UnknownKindError):
        codec.peek(value)


def test_encrypted_value_names_the_provider() -> None:
    value = b"k8s:enc:aescbc:v1:key1:" + bytes(range(40))
    with pytest.raises(EncryptedValueError, match=r"provider aescbc, key key1.*needs the cluster's encryption key") as info:
        codec.decode(value)
    assert info.value.provider == "aescbc"
    with pytest.raises(EncryptedValueError):
        codec.peek(value)
    with pytest.raises(EncryptedValueError):
        codec.redact(value, [("data", "*")], lambda s: s)


def test_oversized_value_is_refused_before_parsing(testdata: Path) -> None:
    pb = (testdata / "core.v1.Pod.pb").read_bytes()
    with pytest.raises(ValueTooLargeError, match=rf"^value of {len(pb)} bytes is over the limit of 1000 bytes$"):
        codec.decode(pb, max_size=1000)


def test_json_that_is_not_an_object() -> None:
    with pytest.raises(DecodeError, match="invalid JSON"):
        codec.decode(b'{"a": ')


def test_with_key_names_the_key() -> None:
    try:
        codec.decode(b"zzz")
    except CodecError as exc:
        assert str(exc.with_key("/registry/pods/ns/p")).startswith("/registry/pods/ns/p: not a Kubernetes object")
    else:  # pragma: no cover
        pytest.fail("no error")


@pytest.mark.parametrize(("obj", "message"), [
    ({"apiVersion": "v1", "kind": "Gadget"}, r"^no schema for apiVersion 'v1' kind 'Gadget'$"),
    ({"apiVersion": "v1", "kind": "Pod", "spec": {"nodeName": 5}}, r"^v1 Pod: field spec\.nodeName: expected a string, got int$"),
    ({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "c", "bogus": 1}]}},
     r"^v1 Pod: field spec\.containers\.0\.bogus: no such field in Container$"),
    ({"apiVersion": "v1", "kind": "Pod", "metadata": {"creationTimestamp": "yesterday"}},
     r"^v1 Pod: field metadata\.creationTimestamp: Invalid isoformat string"),
])
def test_encode_errors_name_the_field(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(EncodeError, match=message):
        codec.encode(obj)


# ---------------------------------------------------------------- lists and watch events


def test_split_list_keeps_items_undecoded(testdata: Path) -> None:
    _, p = load(testdata, "core.v1.Pod")
    items = []
    for i in range(3):
        item = json.loads(json.dumps(p))
        item["metadata"]["name"] = f"pod-{i}"
        del item["apiVersion"], item["kind"]
        items.append(item)
    lst = {"apiVersion": "v1", "kind": "PodList",
           "metadata": {"resourceVersion": "42", "continue": "next"}, "items": items}
    value = codec.encode(lst)
    assert codec.decode(value) == lst
    meta, raws = codec.split_list(value)
    assert meta == {"resourceVersion": "42", "continue": "next"}
    assert [codec.peek(r).name for r in raws] == ["pod-0", "pod-1", "pod-2"]
    assert codec.decode(raws[1]) == {"apiVersion": "v1", "kind": "Pod", **items[1]}


def test_split_list_refuses_non_lists(testdata: Path) -> None:
    with pytest.raises(DecodeError, match=r"^v1 Pod: not a List kind$"):
        codec.split_list((testdata / "core.v1.Pod.pb").read_bytes())


def test_watch_event_fixture(testdata: Path) -> None:
    pb, obj = load(testdata, "core.v1.WatchEvent")
    etype, raw = codec.decode_watch_event(pb)
    assert etype == obj["type"]
    assert codec.decode(raw) == obj["object"]


def test_watch_event_embeds_built_in_objects_as_protobuf(testdata: Path) -> None:
    pb, p = load(testdata, "core.v1.Pod")
    frame = codec.encode({"type": "ADDED", "object": p})
    etype, raw = codec.decode_watch_event(frame)
    assert etype == "ADDED"
    assert raw == pb
    assert codec.decode(frame) == {"type": "ADDED", "object": p}


def test_wrap_builds_the_apiserver_envelope(testdata: Path) -> None:
    pb = (testdata / "core.v1.Pod.pb").read_bytes()
    assert codec.wrap("v1", "Pod", _raw_of(pb)) == pb


# ---------------------------------------------------------------- redact


ENV_PATHS = [
    ("spec", "containers", "*", "env", "*", "value"),
    ("spec", "initContainers", "*", "env", "*", "value"),
    ("spec", "ephemeralContainers", "*", "env", "*", "value"),
]


def test_redact_env_values_without_decoding(testdata: Path) -> None:
    pb, p = load(testdata, "core.v1.Pod")
    new, n = codec.redact(pb, ENV_PATHS, lambda s: "***")
    assert n == 3
    got = codec.decode(new)
    for field in ("containers", "initContainers", "ephemeralContainers"):
        for c in got["spec"][field]:
            assert all(e["value"] == "***" for e in c["env"])
    # nothing else moved: put the originals back and the bytes are the fixture's
    for field in ("containers", "initContainers", "ephemeralContainers"):
        for c_new, c_old in zip(got["spec"][field], p["spec"][field], strict=True):
            for e_new, e_old in zip(c_new["env"], c_old["env"], strict=True):
                e_new["value"] = e_old["value"]
    assert codec.encode(got) == pb


def test_redact_returns_the_same_object_when_nothing_changes(testdata: Path) -> None:
    pb = (testdata / "core.v1.Pod.pb").read_bytes()
    out, n = codec.redact(pb, [("metadata", "annotations", "absent-key")], lambda s: "x")
    assert out is pb and n == 0
    out, n = codec.redact(pb, ENV_PATHS, lambda s: s)
    assert out is pb and n == 0


def test_redact_map_keys_and_bytes(testdata: Path) -> None:
    pb, s = load(testdata, "core.v1.Secret")
    seen: list[Any] = []

    def fn(v: str | bytes) -> str | bytes:
        seen.append(v)
        return b"" if isinstance(v, bytes) else ""

    new, n = codec.redact(pb, [("data", "*"), ("stringData", "*"),
                               ("metadata", "annotations", next(iter(s["metadata"]["annotations"])))], fn)
    assert n == 3
    assert any(isinstance(v, bytes) for v in seen)
    got = codec.decode(new)
    assert set(got["data"].values()) == {""}
    assert set(got["stringData"].values()) == {""}
    assert set(got["metadata"]["annotations"].values()) == {""}


def test_redact_json_values() -> None:
    cr = {"apiVersion": "example.com/v1", "kind": "W", "metadata": {"name": "w"},
          "spec": {"env": [{"name": "A", "value": "secret"}, {"name": "B"}]}}
    value = json.dumps(cr).encode() + b"\n"
    out, n = codec.redact(value, [("spec", "env", "*", "value")], lambda s: "***")
    assert n == 1 and out.endswith(b"\n")
    assert json.loads(out)["spec"]["env"] == [{"name": "A", "value": "***"}, {"name": "B"}]


# ---------------------------------------------------------------- the model path


@pytest.mark.parametrize("kind", ["Pod", "Node", "Namespace", "PersistentVolume"])
def test_model_path(testdata: Path, kind: str) -> None:
    from tattler_etcd.data import ChangeType, Entry, SourceType

    pb, obj = load(testdata, f"core.v1.{kind}")
    entry = Entry.from_value(pb, change=ChangeType.ADD, source=SourceType.ETCD, key=f"/registry/{kind}")
    model = entry.object
    assert type(model).__name__ == f"V1{kind}"
    assert model.metadata.name == obj["metadata"]["name"]
    assert model.metadata.uid == obj["metadata"]["uid"]
    assert model.kind == kind


# ---------------------------------------------------------------- converter strategies agree


@pytest.mark.parametrize("strategy", ["generated", "listfields"])
def test_both_converter_strategies_give_the_upstream_json(testdata: Path, strategy: str) -> None:
    """Each message type gets generated code or a ListFields loop; forcing either everywhere must agree."""
    from tattler_etcd.codec import _convert, _fast

    saved = dict(_convert._converters), dict(_convert._zeros)
    c_decoder = _fast.enabled()
    _fast.set_enabled(False)  # the Python converters are what is compared here
    _convert._converters.clear()
    _convert._zeros.clear()
    _convert.FORCE_STRATEGY = strategy
    try:
        for name in FIXTURES:
            pb, expected = load(testdata, name)
            assert codec.decode(pb) == expected, name
        minimal = codec.encode({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"},
                                "spec": {"hostPath": {"path": "/x"}}})
        assert codec.decode(minimal)["spec"] == {"hostPath": {"path": "/x"}}
        assert codec.decode(codec.encode(pod(containers=[{"name": "c", "ports": [{}]}])))["spec"] == {
            "containers": [{"name": "c", "ports": [{"containerPort": 0}], "resources": {}}]}
    finally:
        _fast.set_enabled(c_decoder)
        _convert.FORCE_STRATEGY = None
        _convert._converters.clear()
        _convert._zeros.clear()
        _convert._converters.update(saved[0])
        _convert._zeros.update(saved[1])


# ---------------------------------------------------------------- invalid UTF-8 (Go accepts it)


def test_invalid_utf8_strings_come_back_as_go_serves_them() -> None:
    meta = ld(1, b"\xff\xfeab") + ld(11, ld(1, b"k\xe2\x82") + ld(2, b"v\xc3")) + ld(14, b"fin\xff")
    value = codec.wrap("v1", "Namespace", ld(1, meta))
    before = codec.counters["codec.invalid_utf8"]
    got = codec.decode(value)
    # one U+FFFD per invalid byte, as Go's JSON encoder writes
    assert got["metadata"] == {"name": "\ufffd\ufffdab", "labels": {"k\ufffd\ufffd": "v\ufffd"},
                               "finalizers": ["fin\ufffd"]}
    assert codec.counters["codec.invalid_utf8"] == before + 1
    assert codec.peek(value).name == "\ufffd\ufffdab"
    new, n = codec.redact(value, [("metadata", "name")], lambda s: "x")
    assert n == 1 and codec.decode(new)["metadata"]["name"] == "x"


def test_invalid_utf8_repair_keeps_the_fields_between_and_after_the_strings() -> None:
    # generation (7) sits between two repaired strings, deletionGracePeriodSeconds (10) ends the message
    meta = ld(1, b"n\xff") + b"\x38\x05" + ld(11, ld(1, b"k") + ld(2, b"v\xc3")) + b"\x50\x03"
    got = codec.decode(codec.wrap("v1", "Namespace", ld(1, meta)))
    assert got["metadata"] == {"name": "n\ufffd", "generation": 5, "labels": {"k": "v\ufffd"},
                               "deletionGracePeriodSeconds": 3}


# ---------------------------------------------------------------- redact: path shapes


def redacted(obj: dict[str, Any], paths: list[tuple[str, ...]]) -> tuple[dict[str, Any], int]:
    new, n = codec.redact(codec.encode(obj), paths, lambda s: b"R" if isinstance(s, bytes) else "R")
    return codec.decode(new), n


def test_redact_indices_keys_and_overlaps() -> None:
    obj = pod(containers=[{"name": "a", "args": ["x", "y"]}, {"name": "b", "args": ["z"]}])
    got, n = redacted(obj, [("spec", "containers", "1", "args", "0")])
    assert n == 1 and [c["args"] for c in got["spec"]["containers"]] == [["x", "y"], ["R"]]
    got, n = redacted(obj, [("spec", "containers", "*", "args")])  # a path ending at a list of strings
    assert n == 3 and [c["args"] for c in got["spec"]["containers"]] == [["R", "R"], ["R"]]
    got, n = redacted(obj, [("spec", "containers", "*", "args", "*"), ("spec", "containers", "0", "args", "1")])
    assert n == 3  # the second path meets an already-redacted leaf: no change counted
    got, n = redacted(obj, [("spec", "containers", "9", "args"), ("spec", "nope"), ("spec", "containers", "x")])
    assert n == 0


def test_redact_special_leaves_and_inline() -> None:
    obj = pod(containers=[{"name": "c", "resources": {"limits": {"cpu": "1"}},
                           "livenessProbe": {"httpGet": {"port": "http", "path": "/p"}}}],
              volumes=[{"name": "v", "secret": {"secretName": "s"}}, {"name": "w", "emptyDir": {}}])
    got, n = redacted(obj, [("spec", "containers", "*", "resources", "limits"),
                            ("spec", "containers", "*", "livenessProbe", "httpGet", "port"),
                            ("spec", "volumes", "*", "secret", "secretName")])
    c = got["spec"]["containers"][0]
    assert n == 3
    assert c["resources"]["limits"] == {"cpu": "R"}
    assert c["livenessProbe"]["httpGet"] == {"port": "R", "path": "/p"}  # inline ProbeHandler is transparent
    assert got["spec"]["volumes"][0]["secret"]["secretName"] == "R"
    assert got["spec"]["volumes"][1] == {"name": "w", "emptyDir": {}}
    # an int IntOrString is not text: untouched
    obj["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = 8080
    _, n = redacted(obj, [("spec", "containers", "*", "livenessProbe", "httpGet", "port")])
    assert n == 0


def test_redact_string_list_wrappers_and_maps_of_lists() -> None:
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {},
              "spec": {"token": "secret-token"},
              "status": {"user": {"username": "u", "extra": {"scopes": ["a", "b"], "other": ["c"]}}}}
    got, n = redacted(review, [("spec", "token"), ("status", "user", "extra", "scopes")])
    assert n == 3
    assert got["spec"]["token"] == "R"
    assert got["status"]["user"]["extra"] == {"scopes": ["R", "R"], "other": ["c"]}


def test_first_use_from_many_threads(testdata: Path) -> None:
    """Converters are prepared on first use; threads racing on it all get whole results."""
    import concurrent.futures

    from tattler_etcd.codec import _convert, _encode

    saved = dict(_convert._converters), dict(_convert._zeros), dict(_encode._encoders)
    _convert._converters.clear()
    _convert._zeros.clear()
    _encode._encoders.clear()
    try:
        names = [n for n in FIXTURES if n.startswith(("core.v1.", "apps.v1."))]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda n: (codec.decode(load(testdata, n)[0]), codec.encode(load(testdata, n)[1])),
                                    names * 3))
        for name, (decoded, encoded) in zip(names * 3, results, strict=True):
            pb, expected = load(testdata, name)
            assert decoded == expected and encoded == pb, name
    finally:
        _convert._converters.update(saved[0])
        _convert._zeros.update(saved[1])
        _encode._encoders.update(saved[2])


def test_epoch_time_is_not_mistaken_for_an_empty_time() -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "creationTimestamp": "1970-01-01T00:00:00Z"},
           "spec": {"containers": None},
           "status": {"conditions": [{"type": "Ready", "status": "True", "lastProbeTime": "1970-01-01T00:00:00Z",
                                      "lastTransitionTime": None}]}}
    got = codec.decode(codec.encode(obj))
    assert got["metadata"]["creationTimestamp"] == "1970-01-01T00:00:00Z"
    assert got["status"]["conditions"][0]["lastProbeTime"] == "1970-01-01T00:00:00Z"
    assert got["status"]["conditions"][0]["lastTransitionTime"] is None


def test_watch_and_list_helpers_refuse_bad_input(testdata: Path) -> None:
    pod_pb = (testdata / "core.v1.Pod.pb").read_bytes()
    with pytest.raises(DecodeError, match=r"^v1 Pod: not a WatchEvent$"):
        codec.decode_watch_event(pod_pb)
    frame = (testdata / "core.v1.WatchEvent.pb").read_bytes()
    with pytest.raises(TruncatedValueError):
        codec.decode_watch_event(frame[:20])
    with pytest.raises(DecodeError, match=r"^WatchEvent without a type$"):
        codec.decode_watch_event(codec.wrap("", "", b""))
    lst = codec.encode({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []})
    assert codec.split_list(lst) == ({}, [])
    with pytest.raises(TruncatedValueError):
        codec.split_list(lst[:-6])
    with pytest.raises(UnknownKindError):
        codec.split_list(codec.wrap("v1", "GadgetList", b""))


def test_bytearray_and_memoryview_values(testdata: Path) -> None:
    pb, expected = load(testdata, "core.v1.Pod")
    cr = b'{"apiVersion": "example.com/v1", "kind": "W", "metadata": {"name": "w"}}'
    for wrapper in (bytearray, memoryview):
        assert codec.decode(wrapper(pb)) == expected
        assert codec.peek(wrapper(pb)).name == expected["metadata"]["name"]
        assert codec.decode(wrapper(cr))["kind"] == "W"
    with pytest.raises(DecodeError, match=r"^expected bytes, got str$"):
        codec.decode("k8s")  # type: ignore[arg-type]
