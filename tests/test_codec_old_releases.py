"""Objects stored by older releases decode to what those releases served, for the fields removed since.

A field removed from the newest release (``r`` in the schema) keeps its own
release's JSON rules: its ``omitempty`` (gogo wrote non-pointer scalars even
when empty, so every object stored before 1.24 carries ``clusterName: ""``,
which 1.23 left out of its JSON) and its place among the keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tattler_etcd import codec
from tattler_etcd.codec import _api, _fast
from tattler_etcd.codec._schema import SCHEMA

DATA = Path(__file__).parent / "data" / "k8s-api"
OLD = [("v1.23.0", "core.v1.Pod"), ("v1.21.0", "core.v1.Service")]


@pytest.fixture(params=["c", "python"])
def decoder(request: pytest.FixtureRequest) -> Iterator[str]:
    """Both decoders: the C one (when built) and the pure-Python one."""
    if request.param == "c" and not _fast.AVAILABLE:
        pytest.skip("the C decoder is not built")
    was = _fast.enabled()
    _fast.set_enabled(request.param == "c")
    try:
        yield request.param
    finally:
        _fast.set_enabled(was)


def load(release: str, name: str) -> tuple[bytes, dict[str, Any]]:
    base = DATA / release
    return (base / f"{name}.pb").read_bytes(), json.loads((base / f"{name}.json").read_text())


def test_the_pod_of_1_23_decodes_exactly_as_1_23_served_it(decoder: str) -> None:
    value, served = load("v1.23.0", "core.v1.Pod")
    got = codec.decode(value)
    assert json.dumps(got) == json.dumps(served)  # key order included: clusterName before managedFields


def test_the_service_of_1_21_keeps_its_removed_fields_where_1_21_put_them(decoder: str) -> None:
    value, served = load("v1.21.0", "core.v1.Service")
    got = codec.decode(value)
    assert got["spec"] == served["spec"]
    assert list(got["spec"]) == list(served["spec"])  # topologyKeys in its place
    assert got["spec"]["topologyKeys"] == served["spec"]["topologyKeys"]
    # Only what today's release changed for fields it still has differs: a zero
    # creationTimestamp is left out now (omitzero) where 1.21 wrote null.
    assert served["metadata"].pop("creationTimestamp") is None
    assert json.dumps(got["metadata"]) == json.dumps(served["metadata"])


def _blank(value: bytes, edit: Any) -> bytes:
    """``value`` with its typed object edited by ``edit(msg)`` (upb), re-wrapped."""
    api_version, kind, raw = _api._split_envelope(value)
    msg = SCHEMA.message_class(_api._message_for(api_version, kind)).FromString(raw)
    edit(msg)
    return codec.wrap(api_version, kind, msg.SerializeToString())


@pytest.mark.parametrize(("release", "name"), OLD)
def test_an_empty_removed_string_is_left_out_as_its_release_did(decoder: str, release: str, name: str) -> None:
    value, served = load(release, name)
    # What every object stored before 1.24 carries: the field, empty.
    value = _blank(value, lambda m: setattr(m.metadata, "clusterName", ""))
    assert b"\x7a\x00" in value  # field 15, length 0: present on the wire
    got = codec.decode(value)
    assert "clusterName" not in got["metadata"]
    del served["metadata"]["clusterName"]
    assert list(got["metadata"]) == [k for k in served["metadata"] if k in got["metadata"]]


def test_a_removed_field_that_was_not_omitempty_is_written_when_present(decoder: str) -> None:
    # events.v1beta1.EventSeries.state had no omitempty: its release wrote "" too.
    field = next(f for f in SCHEMA.messages["k8s.io.api.events.v1beta1.EventSeries"].fields if f.json_name == "state")
    assert field.removed and not field.omitempty
    obj = {"apiVersion": "events.k8s.io/v1beta1", "kind": "Event", "metadata": {"name": "e"},
           "eventTime": "2024-01-01T00:00:00.000000Z", "series": {"count": 2, "lastObservedTime":
                                                                 "2024-01-01T00:00:01.000000Z"}}
    value = _blank(codec.encode(obj), lambda m: setattr(m.series, "state", ""))
    assert codec.decode(value)["series"]["state"] == ""
    # Absent (an object of a newer release): nothing, never a default.
    assert "state" not in codec.decode(codec.encode(obj))["series"]


def test_removed_boolean_false_is_left_out_under_omitempty(decoder: str) -> None:
    field = next(f for f in SCHEMA.messages["k8s.io.api.core.v1.EphemeralVolumeSource"].fields
                 if f.json_name == "readOnly")
    assert field.removed and field.omitempty
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}],
           "volumes": [{"name": "v", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]}}

    def edit(m: Any) -> None:
        m.spec.volumes[0].volumeSource.ephemeral.readOnly = False

    value = _blank(codec.encode(obj), edit)
    assert "readOnly" not in codec.decode(value)["spec"]["volumes"][0]["ephemeral"]

    def edit_true(m: Any) -> None:
        m.spec.volumes[0].volumeSource.ephemeral.readOnly = True

    assert codec.decode(_blank(codec.encode(obj), edit_true))["spec"]["volumes"][0]["ephemeral"]["readOnly"] is True
