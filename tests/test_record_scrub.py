"""The recorder's scrubbing uses the safety stage's rules on values as etcd stores them."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tattler_etcd import codec
from tattler_etcd.errors import TattlerError
from tattler_etcd.pipeline.safety import REDACTED
from tattler_etcd.replay import WITHHELD, scrub_served_object, scrub_stored_value
from tattler_etcd.replay._redact import scrub_apiserver_line, scrub_json_body

SECRET = "pa55w0rd-in-env-7f3a"


def pod_with_secret(testdata: Path) -> dict[str, Any]:
    pod = json.loads((testdata / "core.v1.Pod.json").read_text())
    pod["metadata"].pop("resourceVersion", None)
    pod["metadata"]["annotations"] = {}
    pod["spec"]["containers"][0]["env"] = [{"name": "DB_PASSWORD", "value": SECRET}]
    return pod


def test_a_protobuf_pod_is_scrubbed_and_re_encoded(testdata: Path) -> None:
    value = codec.encode(pod_with_secret(testdata))
    assert SECRET.encode() in value
    out = scrub_stored_value(value, "/registry/pods/ns/p")
    assert SECRET.encode() not in out
    assert out.startswith(codec.MAGIC)
    env = codec.decode(out)["spec"]["containers"][0]["env"]
    assert env == [{"name": "DB_PASSWORD", "value": REDACTED}]


def test_a_value_with_nothing_to_hide_keeps_its_exact_bytes(testdata: Path) -> None:
    value = (testdata / "core.v1.Node.pb").read_bytes()
    assert scrub_stored_value(value, "/registry/minions/n") is value


def test_a_json_value_is_scrubbed_as_json(testdata: Path) -> None:
    value = json.dumps(pod_with_secret(testdata)).encode() + b"\n"
    out = scrub_stored_value(value, "/registry/example.com/things/ns/t")
    assert SECRET.encode() not in out and out.endswith(b"\n")
    assert json.loads(out)["spec"]["containers"][0]["env"][0]["value"] == REDACTED


def test_secret_data_is_redacted(testdata: Path) -> None:
    secret = json.loads((testdata / "core.v1.Secret.json").read_text())
    secret["metadata"].pop("resourceVersion", None)
    secret["data"] = {"token": base64.b64encode(SECRET.encode()).decode()}
    value = codec.encode(secret)
    out = scrub_stored_value(value, "/registry/secrets/ns/s")
    assert SECRET.encode() not in out
    assert base64.b64decode(codec.decode(out)["data"]["token"]) == b"REDACTED"


@pytest.mark.parametrize("value", [b"k8s\x00\x0a\x03abc", b"\xff\xfe not an object", b"k8s:enc:aescbc:v1:key1:xxxx"])
def test_values_that_cannot_be_inspected_raise(value: bytes) -> None:
    with pytest.raises(TattlerError):
        scrub_stored_value(value, "/registry/pods/ns/p")


def test_a_range_reply_is_scrubbed_key_by_key(testdata: Path) -> None:
    pod = codec.encode(pod_with_secret(testdata))
    body = json.dumps({"header": {"revision": "9"}, "kvs": [
        {"key": base64.b64encode(b"/registry/pods/ns/p").decode(), "value": base64.b64encode(pod).decode()},
        {"key": base64.b64encode(b"/registry/pods/ns/q").decode(), "value": base64.b64encode(b"junk").decode()},
    ]}).encode()
    out = json.loads(scrub_json_body(body, scrub_stored_value))
    values = [base64.b64decode(kv["value"]) for kv in out["kvs"]]
    assert SECRET.encode() not in values[0]
    assert values[1] == WITHHELD


def test_apiserver_lists_and_watch_events_are_scrubbed(testdata: Path) -> None:
    pod = pod_with_secret(testdata)
    listing = json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [pod]}).encode()
    event = json.dumps({"type": "MODIFIED", "object": pod}).encode()
    for body in (listing, event):
        out = scrub_apiserver_line(body, scrub_served_object)
        assert SECRET.encode() not in out
    weird = json.dumps({"type": "ADDED", "object": {"kind": "Pod", "spec": {"containers": "nope"}}}).encode()
    assert scrub_apiserver_line(weird, scrub_served_object) == WITHHELD


def test_apiserver_list_items_without_kind_are_scrubbed_by_the_list_kind(testdata: Path) -> None:
    pod = pod_with_secret(testdata)
    del pod["kind"], pod["apiVersion"]  # as the APIServer serves list items in JSON
    listing = json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [pod]}).encode()
    out = scrub_apiserver_line(listing, scrub_served_object)
    assert SECRET.encode() not in out
    assert json.loads(out)["items"][0]["spec"]["containers"][0]["env"][0]["value"] == REDACTED


def _bare_watch_frame(type_: str, obj: dict[str, Any]) -> bytes:
    """A WatchEvent as the APIServer streams it: the message without the k8s envelope."""
    from tests.fake_apiserver import _unwrap_watch_event

    return _unwrap_watch_event(codec.encode({"kind": "WatchEvent", "apiVersion": "v1", "type": type_, "object": obj}))


def test_protobuf_watch_frames_are_scrubbed_in_place(testdata: Path) -> None:
    from tattler_etcd.codec.wire import length_delimited as _fields
    from tattler_etcd.replay._redact import scrub_watch_frame

    node = json.loads((testdata / "core.v1.Node.json").read_text())
    plain = _bare_watch_frame("MODIFIED", node)
    assert scrub_watch_frame(plain, scrub_stored_value) == (plain, "MODIFIED", _raw_of(plain))

    frame = _bare_watch_frame("ADDED", pod_with_secret(testdata))
    clean, type_, obj = scrub_watch_frame(frame, scrub_stored_value)
    assert type_ == "ADDED" and SECRET.encode() in frame and SECRET.encode() not in clean
    assert _raw_of(clean) == obj
    assert codec.decode(obj)["spec"]["containers"][0]["env"][0]["value"] == REDACTED
    assert [n for n, *_ in _fields(clean)] == [n for n, *_ in _fields(frame)]  # same fields, same order
    assert scrub_watch_frame(b"\xff\xff\xff", scrub_stored_value) == (WITHHELD, "", b"")


def _raw_of(frame: bytes) -> bytes:
    from tattler_etcd.codec.wire import length_delimited as _fields

    s, e = next((s, e) for n, s, e, _ in _fields(frame) if n == 2)
    ext = frame[s:e]
    rs, re_ = next((s, e) for n, s, e, _ in _fields(ext) if n == 1)
    return ext[rs:re_]
