"""The safety stage on protobuf values: scrubbed as bytes, agreeing with the dict path."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tattler_etcd import codec
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
    o = with_last_applied(obj("ConfigMap"), '{"kind":"Pod", "spec": ' + SECRET)
    new, n = scrub_value(codec.encode(o), "ConfigMap")
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
