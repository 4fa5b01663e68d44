"""The safety stage on protobuf values: scrubbed as bytes, agreeing with the dict path."""

from __future__ import annotations

import copy
import gc
import json
from pathlib import Path
from typing import Any

import pytest

from tattler_etcd import codec
from tattler_etcd.codec._api import _split_envelope
from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.errors import UnsafeObjectError
from tattler_etcd.pipeline.safety import (
    CONTAINER_LISTS,
    LAST_APPLIED_ANNOTATION,
    POD_SPEC_PATHS,
    REDACTED,
    REDACTED_DATA,
    scrub_dict,
    scrub_entry,
    scrub_value,
)
from tests.support.pipeline_objects import WORKLOAD_KINDS, obj, pod_spec, with_last_applied

SECRET = "hunter2-the-secret"


def from_bytes(value: bytes) -> Entry:
    return Entry.from_value(value, change=ChangeType.ADD, source=SourceType.ETCD, resource_version="7")


def dict_path(o: dict[str, Any]) -> dict[str, Any]:
    """What the dict path makes of ``o``, through the codec so both sides are normalised alike."""
    o = copy.deepcopy(o)
    scrub_dict(o)
    return codec.decode(codec.encode(o))


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_bytes_path_scrubs_every_place_without_building_the_dict(kind: str) -> None:
    o = with_last_applied(obj(kind, spec=pod_spec(SECRET, containers=2, lists=CONTAINER_LISTS)))
    ent = from_bytes(codec.encode(copy.deepcopy(o)))
    assert not ent.has_raw()
    n = scrub_entry(ent)
    assert n == 2 * len(CONTAINER_LISTS) + 1  # every env value, and the annotation as one
    assert not ent.has_raw(), "the bytes path must not build the dict"
    assert ent.value is not None and SECRET.encode() not in ent.value
    got = codec.decode(ent.value)
    assert got == dict_path(o)
    applied = json.loads(got["metadata"]["annotations"][LAST_APPLIED_ANNOTATION])
    spec = applied
    for seg in POD_SPEC_PATHS[kind]:
        spec = spec[seg]
    assert spec["containers"][0]["env"][0] == {"name": "PLAIN", "value": REDACTED}


def test_clean_object_keeps_its_very_bytes() -> None:
    value = codec.encode(obj("Pod", spec={"containers": [{"name": "a", "env": [{"name": "E", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.name"}}}]}]}))
    ent = from_bytes(value)
    assert scrub_entry(ent) == 0
    assert ent.value is value


def test_secret_data_agrees_between_forms() -> None:
    inner = obj("Secret", data={"password": "aHVudGVyMg=="}, stringData={"token": SECRET})
    o = with_last_applied(obj("Secret", data={"password": "aHVudGVyMg==", "empty": ""}), inner)
    value = codec.encode(copy.deepcopy(o))
    ent = from_bytes(value)
    assert scrub_entry(ent) is None  # refused by default, bytes untouched
    assert ent.value is value
    assert scrub_entry(ent, allow_secrets=True) == 2
    got = codec.decode(ent.value)
    assert got["data"] == {"password": REDACTED_DATA, "empty": ""}
    assert got == dict_path(o)
    assert SECRET.encode() not in ent.value and b"hunter2" not in ent.value


def test_unparseable_annotation_is_replaced_whole_in_bytes() -> None:
    o = with_last_applied(obj("Pod"), '{"kind":"Pod", "spec": ' + SECRET)
    new, n = scrub_value(codec.encode(o), "Pod")
    assert n == 1
    assert codec.decode(new)["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] == REDACTED


def test_undecodable_bytes_fail_closed() -> None:
    good = codec.encode(obj("Pod", spec=pod_spec(SECRET)))
    with pytest.raises(UnsafeObjectError, match=r"^cannot walk the value: TruncatedValueError: "):
        scrub_value(good[:-3], "Pod")


FIXTURES = [
    "core.v1.Pod", "core.v1.PodTemplate", "core.v1.ReplicationController", "apps.v1.Deployment",
    "apps.v1.ReplicaSet", "apps.v1.StatefulSet", "apps.v1.DaemonSet", "batch.v1.Job", "batch.v1.CronJob",
    "batch.v1beta1.CronJob", "extensions.v1beta1.Deployment", "apps.v1beta2.DaemonSet",
]


def _env_values(o: Any) -> list[Any]:
    """Every ``env[].value`` anywhere in ``o`` (a broader net than the rules, to check them)."""
    found: list[Any] = []
    if isinstance(o, dict):
        for k, v in o.items():
            if k == "env" and isinstance(v, list):
                found.extend(x.get("value") for x in v if isinstance(x, dict))
            found.extend(_env_values(v))
    elif isinstance(o, list):
        for v in o:
            found.extend(_env_values(v))
    return found


@pytest.mark.parametrize("name", FIXTURES)
def test_upstream_fixtures_leave_no_env_value(testdata: Path, name: str) -> None:
    value = (testdata / f"{name}.pb").read_bytes()
    before = codec.decode(value)
    assert any(v for v in _env_values(before)), "the fixture should have env values to scrub"
    ent = from_bytes(value)
    assert scrub_entry(ent)
    after = codec.decode(ent.value) if ent.value is not None else ent.raw
    assert {v for v in _env_values(after) if v} == {REDACTED}
    before_scrubbed = copy.deepcopy(before)
    scrub_dict(before_scrubbed)
    assert after == before_scrubbed


def test_upstream_secret_fixture(testdata: Path) -> None:
    value = (testdata / "core.v1.Secret.pb").read_bytes()
    ent = from_bytes(value)
    assert scrub_entry(ent) is None
    assert scrub_entry(ent, allow_secrets=True)
    data = codec.decode(ent.value)["data"] if ent.value is not None else ent.raw["data"]
    assert data and set(data.values()) <= {REDACTED_DATA, ""}


def test_bytes_of_another_kind_than_the_entry_says_fail_closed() -> None:
    value = codec.encode(obj("Pod", spec=pod_spec(SECRET)))
    ent = Entry(change=ChangeType.ADD, source=SourceType.ETCD, uid="u", api_version="v1", kind="ConfigMap",
                namespace="ns", name="x", resource_version="1", value=value)
    with pytest.raises(UnsafeObjectError, match=r"^the value holds a 'Pod', the entry says 'ConfigMap'$"):
        scrub_entry(ent)


# ---------------------------------------------------------------- nothing clear stays reachable


def _held(o: Any, seen: set[int] | None = None) -> list[Any]:
    """Every str/bytes reachable from ``o`` through Python references (slots, dicts, lists, tuples)."""
    seen = set() if seen is None else seen
    if id(o) in seen:
        return []
    seen.add(id(o))
    if isinstance(o, (str, bytes, bytearray)):
        return [o]
    if isinstance(o, (int, float, type)) or o is None:
        return []
    out: list[Any] = []
    for x in gc.get_referents(o):
        if isinstance(x, type) or callable(x) and not isinstance(x, (dict, list, tuple)):
            continue
        out += _held(x, seen)
    return out


def _leaks(ent: Entry, secret: str) -> list[str]:
    forms = []
    for label, text in (("value", ent.value), ("raw", json.dumps(ent.raw)), ("object", repr(ent.object))):
        if text is not None and (secret.encode() in text if isinstance(text, bytes) else secret in text):
            forms.append(label)
    return forms


ORDERS = [("value", "raw", "object"), ("raw", "value", "object"), ("object", "raw", "value")]


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
@pytest.mark.parametrize("order", ORDERS)
def test_no_clear_value_reachable_after_scrub_entry(kind: str, order: tuple[str, ...]) -> None:
    o = obj(kind, spec=pod_spec(SECRET, containers=2, lists=CONTAINER_LISTS))
    if kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"):
        o["spec"]["selector"] = {"matchLabels": {"app": "x"}}  # the client's models require one
    with_last_applied(o)
    ent = from_bytes(codec.encode(copy.deepcopy(o)))
    assert [x for x in _held(ent) if isinstance(x, bytes) and SECRET.encode() in x]  # the check sees the clear bytes while they are there
    assert scrub_entry(ent) == 2 * len(CONTAINER_LISTS) + 1
    # Before any form is asked for: the entry holds nothing with the clear value in it.
    assert not [x for x in _held(ent) if (SECRET.encode() if isinstance(x, bytes) else SECRET) in x]
    for form in order:
        getattr(ent, form)
        assert _leaks(ent, SECRET) == []
    assert not [x for x in _held(ent) if (SECRET.encode() if isinstance(x, bytes) else SECRET) in x]


def test_no_clear_value_reachable_after_scrub_entry_secret() -> None:
    inner = obj("Secret", stringData={"token": SECRET})
    o = with_last_applied(obj("Secret", stringData={"token": SECRET}, data={"p": "aHVudGVyMg=="}), inner)
    ent = from_bytes(codec.encode(copy.deepcopy(o)))
    assert scrub_entry(ent, allow_secrets=True) == 3
    for secret in (SECRET, "hunter2"):
        assert not [x for x in _held(ent) if (secret.encode() if isinstance(x, bytes) else secret) in x]
        assert _leaks(ent, secret) == []


def test_edited_protobuf_is_serialized_once_and_the_clear_bytes_dropped() -> None:
    value = codec.encode(obj("Pod", spec=pod_spec(SECRET)))
    ent = from_bytes(value)
    assert scrub_entry(ent) == 1
    assert not ent.has_raw(), "the bytes path must not build the dict"
    assert ent.value is not None and ent.value is not value and SECRET.encode() not in ent.value
    assert codec.decode(ent.value)["spec"]["containers"][0]["env"][0]["value"] == REDACTED


def test_kind_without_rules_keeps_its_bytes_unparsed() -> None:
    value = codec.encode(obj("ConfigMap", data={"k": SECRET}))
    ent = from_bytes(value)
    assert scrub_entry(ent) == 0
    assert ent.value is value


def test_last_applied_is_judged_by_the_kind_of_the_entry_not_its_own_claim() -> None:
    # A ConfigMap (no rules) keeps its annotation, whatever it claims to be.
    value = codec.encode(with_last_applied(obj("ConfigMap"), obj("Pod", spec=pod_spec(SECRET))))
    ent = from_bytes(value)
    assert scrub_entry(ent) == 0
    assert ent.value is value
    # A Pod whose annotation holds a Pod is scrubbed inside by the Pod rules.
    ent = from_bytes(codec.encode(with_last_applied(obj("Pod", spec=pod_spec("plain")),
                                                    obj("Pod", spec=pod_spec(SECRET)))))
    assert scrub_entry(ent) == 2
    applied = json.loads(ent.raw["metadata"]["annotations"][LAST_APPLIED_ANNOTATION])
    assert applied["spec"]["containers"][0]["env"][0] == {"name": "PLAIN", "value": REDACTED}
    assert _leaks(ent, SECRET) == []
    # One that claims to be another kind cannot be judged by the Pod rules: replaced whole.
    inner = obj("Pod", spec=pod_spec(SECRET))
    inner["kind"] = "ConfigMap"
    ent = from_bytes(codec.encode(with_last_applied(obj("Pod", spec=pod_spec("plain")), inner)))
    assert scrub_entry(ent) == 2
    assert ent.raw["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] == REDACTED
    assert _leaks(ent, SECRET) == []


def test_entry_with_broken_bytes_fails_closed() -> None:
    good = codec.encode(obj("Pod", spec=pod_spec(SECRET)))
    cut = codec.wrap("v1", "Pod", _split_envelope(good)[2][:-3])  # the envelope is whole, the object is not
    with pytest.raises(UnsafeObjectError, match=r"^cannot walk the value: TruncatedValueError: "):
        scrub_entry(Entry(change=ChangeType.ADD, source=SourceType.ETCD, uid="u", api_version="v1", kind="Pod",
                          namespace="ns", name="x", resource_version="1", value=cut))
    with pytest.raises(UnsafeObjectError, match=r"^cannot decode: TruncatedValueError: envelope: "):
        scrub_entry(Entry(change=ChangeType.ADD, source=SourceType.ETCD, uid="u", api_version="v1", kind="Pod",
                          namespace="ns", name="x", resource_version="1", value=good[:-3]))
    with pytest.raises(UnsafeObjectError, match=r"^cannot decode: DecodeError: not a Kubernetes object: "):
        scrub_entry(Entry(change=ChangeType.ADD, source=SourceType.ETCD, uid="u", api_version="v1", kind="Pod",
                          namespace="ns", name="x", resource_version="1", value=b"garbage"))


@pytest.mark.parametrize("applied", [True, False])
def test_large_object_annotation_is_looked_up_not_scanned(applied: bool) -> None:
    o = obj("Pod", spec=pod_spec(SECRET), status={"message": "m" * 5000})  # over the scan limit
    if applied:
        with_last_applied(o, obj("Pod", spec=pod_spec(SECRET)))
    value = codec.encode(o)
    assert len(value) > 4096
    ent = from_bytes(value)
    assert scrub_entry(ent) == (2 if applied else 1)
    assert ent.value is not None and SECRET.encode() not in ent.value
    assert _leaks(ent, SECRET) == []
