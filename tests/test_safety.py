"""The safety stage's rules on dicts: every place, nested templates, the annotation, Secrets, fail closed."""

from __future__ import annotations

import json
import logging
import re

import pytest
import trio

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.errors import UnsafeObjectError
from tattler_etcd.pipeline.safety import (
    CONTAINER_LISTS,
    LAST_APPLIED_ANNOTATION,
    POD_SPEC_PATHS,
    REDACTED,
    REDACTED_DATA,
    paths_for,
    run_safety,
    scrub_dict,
    scrub_entry,
)
from tattler_etcd.stats import Counters
from tests.support.pipeline_objects import WORKLOAD_KINDS, entry, obj, pod_spec, with_last_applied

SECRET = "hunter2-the-secret"


def _spec_of(o: dict, kind: str) -> dict:
    node = o
    for seg in POD_SPEC_PATHS[kind]:
        node = node[seg]
    return node


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
@pytest.mark.parametrize("field", CONTAINER_LISTS)
def test_env_values_redacted_in_every_pod_spec_place(kind: str, field: str) -> None:
    o = obj(kind, spec=pod_spec(SECRET, containers=2, lists=(field,)))
    n = scrub_dict(o)
    assert n == 2
    containers = _spec_of(o, kind)[field]
    for c in containers:
        plain, ref = c["env"]
        assert plain == {"name": "PLAIN", "value": REDACTED}
        # valueFrom is a reference, not a value: it stays, and so do names.
        assert ref == {"name": "FROM_REF", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    assert SECRET not in json.dumps(o)


def test_cronjob_template_is_three_levels_deep() -> None:
    o = obj("CronJob", spec=pod_spec(SECRET))
    assert o["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == SECRET
    assert scrub_dict(o) == 1
    assert o["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == REDACTED


def test_kind_matched_by_name_in_any_group() -> None:
    o = obj("Deployment", spec=pod_spec(SECRET))
    o["apiVersion"] = "extensions/v1beta1"
    assert scrub_dict(o) == 1
    assert SECRET not in json.dumps(o)


def test_other_kinds_keep_look_alike_fields() -> None:
    # A ConfigMap is not a pod template: a "spec" in it is not touched.
    o = obj("ConfigMap", data={"spec": SECRET})
    assert scrub_dict(o) == 0
    assert o["data"] == {"spec": SECRET}


def test_empty_values_stay_empty_and_absent_parts_are_fine() -> None:
    o = obj("Pod", spec={"containers": [{"name": "a", "env": [{"name": "E", "value": ""}, {"name": "F"}]},
                                        {"name": "b"}], "initContainers": None})
    assert scrub_dict(o) == 0
    assert o["spec"]["containers"][0]["env"] == [{"name": "E", "value": ""}, {"name": "F"}]
    assert scrub_dict(obj("Pod")) == 0


def test_last_applied_annotation_scrubbed_with_the_same_rules() -> None:
    o = with_last_applied(obj("Deployment", spec=pod_spec(SECRET)))
    assert SECRET in o["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
    assert scrub_dict(o) == 2  # the env value, and the annotation counted as one
    text = o["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
    assert SECRET not in text
    assert text.endswith("\n")
    applied = json.loads(text)
    assert applied["spec"]["template"]["spec"]["containers"][0]["env"][0] == {"name": "PLAIN", "value": REDACTED}
    assert applied["metadata"] == {"name": "x", "namespace": "ns"}


def test_last_applied_annotation_is_judged_by_the_objects_own_kind() -> None:
    # A Secret whose annotation claims to hold a ConfigMap: judged as a Secret, redacted whole.
    inner = obj("ConfigMap", data={"password": SECRET})
    o = with_last_applied(obj("Secret"), inner)
    assert scrub_dict(o) == 1
    assert o["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] == REDACTED
    # A Deployment whose annotation says it is a ConfigMap: the Deployment rules
    # cannot judge another kind's shape, so it is replaced whole.
    inner = obj("Deployment", spec=pod_spec(SECRET))
    inner["kind"] = "ConfigMap"
    o = with_last_applied(obj("Deployment"), inner)
    assert scrub_dict(o) == 1
    assert o["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] == REDACTED
    # A kind without rules keeps its annotation as it is, JSON or not.
    o = with_last_applied(obj("ConfigMap"), "not json")
    assert scrub_dict(o) == 0


def test_last_applied_annotation_without_secrets_is_left_byte_for_byte() -> None:
    text = '{"kind":"ConfigMap",  "data":{"a":"b"}}'
    o = with_last_applied(obj("ConfigMap"), text)
    assert scrub_dict(o) == 0
    assert o["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] == text


@pytest.mark.parametrize("bad", [f'{{"kind":"Pod","spec":{{"containers":[{{"env":[{{"value":"{SECRET}"', "[1, 2]",
                                 f'"{SECRET}"', f'{{"kind":"Pod","spec":{{"containers":"{SECRET}"}}}}'])
def test_last_applied_annotation_that_cannot_be_read_is_replaced_whole(bad: str) -> None:
    o = with_last_applied(obj("Pod"), bad)
    assert scrub_dict(o) == 1
    assert o["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] == REDACTED


def test_last_applied_of_a_secret_is_redacted_whole() -> None:
    inner = obj("Secret", data={"password": "aHVudGVyMg=="}, stringData={"token": SECRET})
    o = with_last_applied(obj("Secret", data={"password": "aHVudGVyMg=="}), inner)
    assert scrub_dict(o) == 2
    assert o["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] == REDACTED
    assert o["data"] == {"password": REDACTED_DATA}


def test_redacted_data_is_base64_of_redacted() -> None:
    import base64

    assert base64.b64decode(REDACTED_DATA) == REDACTED.encode()


def test_list_kinds_scrub_their_items() -> None:
    lst = {"apiVersion": "v1", "kind": "PodList", "metadata": {},
           "items": [obj("Pod", name=f"p{i}", spec=pod_spec(SECRET)) for i in range(3)]}
    assert scrub_dict(lst) == 3
    assert SECRET not in json.dumps(lst)


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ({"containers": {"name": "a"}}, "spec.containers"),
        ({"containers": [SECRET]}, "spec.containers[]"),
        ({"initContainers": [{"env": {"A": SECRET}}]}, "spec.initContainers[].env"),
        ({"ephemeralContainers": [{"env": [SECRET]}]}, "spec.ephemeralContainers[].env[]"),
    ],
)
def test_unexpected_shapes_fail_closed_naming_the_place_not_the_value(spec: dict, where: str) -> None:
    o = obj("Pod", spec=spec)
    with pytest.raises(UnsafeObjectError, match=rf"^unexpected shape at {re.escape(where)}$"):
        scrub_dict(o)


def test_a_template_that_is_not_an_object_fails_closed() -> None:
    o = obj("Deployment")
    o["spec"] = {"template": SECRET}
    with pytest.raises(UnsafeObjectError, match=r"^unexpected shape at spec\.template$"):
        scrub_dict(o)


def test_no_kind_fails_closed() -> None:
    with pytest.raises(UnsafeObjectError, match=r"^no kind$"):
        scrub_dict({"spec": {}})


def test_paths_for_covers_the_table() -> None:
    assert set(paths_for("CronJob")) == {
        ("spec", "jobTemplate", "spec", "template", "spec", c, "*", "env", "*", "value") for c in CONTAINER_LISTS
    }
    assert paths_for("Secret") == (("data", "*"), ("stringData", "*"))
    assert paths_for("ConfigMap") == ()


# -- entries ------------------------------------------------------------------


def test_scrub_entry_refuses_secrets_unless_allowed() -> None:
    s = entry(obj("Secret", data={"k": "dg=="}))
    assert scrub_entry(s) is None
    assert s.raw["data"] == {"k": "dg=="}  # refused, untouched
    assert scrub_entry(s, allow_secrets=True) == 1
    assert s.raw["data"] == {"k": REDACTED_DATA}


def test_scrub_entry_drops_stale_bytes_and_model() -> None:
    # An entry holding both forms: the bytes still have the clear value and must go.
    o = obj("Pod", spec=pod_spec(SECRET))
    ent = Entry(change=ChangeType.ADD, source=SourceType.ETCD, uid="u", api_version="v1", kind="Pod",
                namespace="ns", name="x", resource_version="1", raw=o, value=b"k8s\x00stale " + SECRET.encode())
    first_model = ent.object
    assert scrub_entry(ent) == 1
    assert ent.value is None
    assert ent.object is not first_model
    assert ent.object.spec.containers[0].env[0].value == REDACTED


def test_scrub_entry_without_kind_fails_closed() -> None:
    ent = Entry(change=ChangeType.ADD, source=SourceType.ETCD, uid="u", api_version="v1", kind="",
                namespace=None, name="x", resource_version="1", raw={})
    with pytest.raises(UnsafeObjectError, match=r"^no kind$"):
        scrub_entry(ent)


# -- the stage ----------------------------------------------------------------


async def _through_safety(chunks: list[list[Entry]], *, allow_secrets: bool = False) -> tuple[list[list[Entry]], Counters]:
    counters = Counters()
    send_in, recv_in = trio.open_memory_channel[list[Entry]](0)
    send_out, recv_out = trio.open_memory_channel[list[Entry]](0)
    got: list[list[Entry]] = []
    async def feed() -> None:
        async with send_in:
            for chunk in chunks:
                await send_in.send(chunk)

    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(lambda: run_safety(recv_in, send_out, counters=counters, allow_secrets=allow_secrets))
            n.start_soon(feed)
            async with recv_out:
                async for chunk in recv_out:
                    got.append(chunk)
    return got, counters


async def test_stage_counts_drops_by_reason_and_logs_keys_only(caplog: pytest.LogCaptureFixture) -> None:
    bad = obj("Pod", name="bad", spec={"containers": SECRET})
    chunks = [
        [entry(obj("Pod", name="a", spec=pod_spec(SECRET))), entry(obj("Secret", name="s", data={"k": "dg=="}))],
        [entry(bad)],  # a chunk that empties entirely is not sent
        [entry(obj("ConfigMap", name="c"))],
    ]
    with caplog.at_level(logging.DEBUG, logger="tattler_etcd"):
        got, counters = await _through_safety(chunks)
    assert [[x.name for x in c] for c in got] == [["a"], ["c"]]
    assert counters.prefixed("safety") == {
        "dropped.secret": 1, "dropped.unsafe": 1, "in": 4, "out": 2, "redacted": 1,
    }
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["safety: dropped Pod/ns/bad: cannot inspect it (unexpected shape at spec.containers)"]
    assert all(SECRET not in r.getMessage() for r in caplog.records)


async def test_stage_lets_redacted_secrets_through_when_allowed() -> None:
    got, counters = await _through_safety([[entry(obj("Secret", stringData={"t": SECRET}))]], allow_secrets=True)
    assert got[0][0].raw["stringData"] == {"t": REDACTED}
    assert counters["safety.dropped.secret"] == 0


async def test_stage_fails_closed_on_a_value_it_cannot_decode() -> None:
    ent = Entry(change=ChangeType.ADD, source=SourceType.ETCD, uid="u", api_version="v1", kind="Pod",
                namespace="ns", name="junk", resource_version="1", value=b"k8s\x00\xff\xff\xff not protobuf")
    got, counters = await _through_safety([[ent]])
    assert got == []
    assert counters["safety.dropped.unsafe"] == 1


def test_scrub_entry_refuses_a_kind_mismatch() -> None:
    # A reader bug must not let a Secret through under another name.
    o = obj("Secret", data={"k": "dg=="})
    ent = Entry(change=ChangeType.ADD, source=SourceType.ETCD, uid="u", api_version="v1", kind="ConfigMap",
                namespace="ns", name="x", resource_version="1", raw=o)
    with pytest.raises(UnsafeObjectError, match=r"^the object is a 'Secret', the entry says 'ConfigMap'$"):
        scrub_entry(ent)
