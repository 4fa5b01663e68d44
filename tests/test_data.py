"""The Entry model: cheap to make, lazy forms, one JSON form, identity-only repr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tattler_etcd import codec
from tattler_etcd.data import ChangeType, Entry, SourceType
from tests.support.pipeline_objects import obj, pod_spec


def test_from_dict_reads_identity() -> None:
    o = obj("Pod", name="p", uid="u1", rv="42", spec=pod_spec())
    ent = Entry.from_dict(o, change=ChangeType.ADD, source=SourceType.APISERVER)
    assert (ent.uid, ent.api_version, ent.kind, ent.namespace, ent.name, ent.resource_version) == (
        "u1", "v1", "Pod", "ns", "p", "42")
    assert ent.key == "Pod/ns/p"
    assert ent.raw is o and ent.has_raw() and ent.value is None


def test_cluster_scoped_has_no_namespace() -> None:
    ent = Entry.from_dict(obj("Node", name="n1", namespace=None), change=ChangeType.ADD, source=SourceType.ETCD)
    assert ent.namespace is None
    assert ent.key == "Node/n1"


def test_resource_version_override_fills_the_object() -> None:
    o = obj("ConfigMap", rv="")
    ent = Entry.from_dict(o, change=ChangeType.ADD, source=SourceType.ETCD, resource_version="99", key="/registry/x")
    assert ent.resource_version == "99"
    assert ent.raw["metadata"]["resourceVersion"] == "99"
    assert ent.key == "/registry/x"


def test_an_entry_needs_an_object() -> None:
    with pytest.raises(ValueError, match=r"^an Entry needs raw or value$"):
        Entry(change=ChangeType.ADD, source=SourceType.ETCD, uid="u", api_version="v1", kind="Pod",
              namespace=None, name="x", resource_version="1")


def test_from_value_builds_the_dict_only_when_asked(testdata: Path) -> None:
    value = (testdata / "core.v1.Pod.pb").read_bytes()
    ent = Entry.from_value(value, change=ChangeType.SNAPSHOT, source=SourceType.ETCD, resource_version="123")
    assert not ent.has_raw()
    meta = codec.peek(value)
    assert (ent.uid, ent.name, ent.kind) == (meta.uid, meta.name, "Pod")
    raw = ent.raw
    assert ent.has_raw() and ent.raw is raw
    assert raw["metadata"]["resourceVersion"] == "123"


def test_from_value_json_is_parsed_at_once() -> None:
    value = json.dumps(obj("Widget", name="w", uid="u-w", rv="")).encode()
    ent = Entry.from_value(value, change=ChangeType.ADD, source=SourceType.ETCD, resource_version="8")
    assert ent.has_raw()
    assert (ent.kind, ent.uid, ent.resource_version) == ("Widget", "u-w", "8")


def test_replacing_forms_drops_the_cached_ones() -> None:
    o = obj("Pod", spec=pod_spec("a"))
    value = codec.encode(o)
    ent = Entry.from_value(value, change=ChangeType.ADD, source=SourceType.ETCD)
    model = ent.object
    assert model.spec.containers[0].env[0].value == "a"
    o2 = obj("Pod", spec=pod_spec("b"))
    ent.replace_value(codec.encode(o2))
    assert not ent.has_raw()
    assert ent.object.spec.containers[0].env[0].value == "b"
    ent.replace_raw(obj("Pod", spec=pod_spec("c")))
    assert ent.value is None
    assert ent.object.spec.containers[0].env[0].value == "c"


def test_json_form_round_trips() -> None:
    ent = Entry.from_dict(obj("Pod", name="p", uid="u", rv="5"), change=ChangeType.DELETE,
                          source=SourceType.APISERVER)
    doc = json.loads(ent.to_json())
    assert list(doc) == ["change", "source", "uid", "apiVersion", "kind", "namespace", "name",
                         "resourceVersion", "object"]
    assert (doc["change"], doc["source"]) == ("delete", "apiserver")
    back = Entry.from_json_dict(doc)
    assert back.to_json_dict() == ent.to_json_dict()


def test_repr_never_carries_the_body() -> None:
    ent = Entry.from_dict(obj("Pod", name="p", uid="u", rv="5", spec=pod_spec("s3cret")),
                          change=ChangeType.ADD, source=SourceType.ETCD)
    assert repr(ent) == "Entry(add etcd Pod Pod/ns/p uid=u rv=5)"


def test_kinds_need_no_registration() -> None:
    o = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "uid": "u"}, "spec": {}}
    ent = Entry.from_dict(o, change=ChangeType.ADD, source=SourceType.ETCD)
    assert ent.object is o  # no model for a custom kind: the dict itself

