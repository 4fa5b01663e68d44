"""A cluster with secret values planted wherever they can hide, one distinct marker per place.

Each marker names its place, so a leak says where it came from. Used by the
end-to-end test (a real etcd, the real CLI) and the library tests.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass, field
from typing import Any

from tattler_etcd import codec
from tattler_etcd.pipeline.safety import CONTAINER_LISTS, LAST_APPLIED_ANNOTATION, POD_SPEC_PATHS
from tests.support.pipeline_objects import obj, pod_spec

#: The user rules the scenario needs for the places no default covers.
USER_RULES = (
    "Pod:spec.containers[*].args",
    "ConfigMap:data.*",
    "widgets.example.com:spec.env[*].value",
    "annotation:example.com/token",
    "label:example.com/secret-label",
)

#: Where each kind lives in etcd (the reader's resource name, the key's middle).
_LOCATION = {
    "Pod": ("pods", "pods"), "PodTemplate": ("podtemplates", "podtemplates"),
    "ReplicationController": ("replicationcontrollers", "controllers"),
    "Deployment": ("deployments.apps", "deployments"), "ReplicaSet": ("replicasets.apps", "replicasets"),
    "StatefulSet": ("statefulsets.apps", "statefulsets"), "DaemonSet": ("daemonsets.apps", "daemonsets"),
    "Job": ("jobs.batch", "jobs"), "CronJob": ("cronjobs.batch", "cronjobs"),
    "ControllerRevision": ("controllerrevisions.apps", "controllerrevisions"),
    "Secret": ("secrets", "secrets"), "ConfigMap": ("configmaps", "configmaps"),
    "PodPreset": ("podpresets.settings.k8s.io", "settings.k8s.io/podpresets"),
}


@dataclass
class Planted:
    """Keys and values to put in etcd, the markers planted, and what must come out."""

    items: list[tuple[str, bytes]] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)
    resources: set[str] = field(default_factory=set)
    #: Names of objects that must pass the pipeline (so the scan proves something).
    passing: set[str] = field(default_factory=set)

    def mark(self, place: str) -> str:
        m = f"zqLEAK{len(self.markers):02d}x{place.replace('.', '').replace('/', '')[:24]}Q"
        self.markers.append(m)
        return m

    def put(self, kind: str, name: str, value: bytes, *, passes: bool = True) -> None:
        resource, where = _LOCATION[kind]
        self.resources.add(resource)
        self.items.append((f"/registry/{where}/ns/{name}", value))
        if passes:
            self.passing.add(name)


def _unknown(marker: str) -> str:
    """An unknown protobuf field (number 999, bytes) holding ``marker``, as the codec keeps it: base64 wire bytes."""
    payload = marker.encode()
    tag = (999 << 3) | 2
    wire = bytearray()
    for n in (tag, len(payload)):
        while n > 0x7F:
            wire.append((n & 0x7F) | 0x80)
            n >>= 7
        wire.append(n)
    return base64.b64encode(bytes(wire) + payload).decode()


def _with_raw(cr: dict[str, Any], raw: bytes) -> bytes:
    """A ControllerRevision whose ``data`` holds exactly ``raw`` (the object form, or bytes that are no JSON)."""
    parsed = codec.parse(codec.encode(cr))
    parsed._typed().data.raw = raw
    parsed._changed()
    return codec.to_bytes(parsed)


def build() -> Planted:
    p = Planted()
    # Every container list of every workload kind, each with its own marker; a last-applied copy too.
    for kind in POD_SPEC_PATHS:
        spec: dict[str, Any] = {}
        for lst in CONTAINER_LISTS:
            spec.update(pod_spec(p.mark(f"{kind}.{lst}"), lists=(lst,)))
        name = f"w-{kind.lower()}"
        o = obj(kind, name=name, spec=spec)
        applied = obj(kind, name=name, spec=pod_spec(p.mark(f"{kind}.applied")))
        o["metadata"]["annotations"] = {LAST_APPLIED_ANNOTATION: json.dumps(applied) + "\n"}
        p.put(kind, name, codec.encode(o))

    # A Pod with everything else a Pod can carry: args (user rule), annotations and labels (user
    # rules), an unknown field in a container and at the top, a last-applied that is not JSON.
    pod = obj("Pod", name="pod-extras", spec=pod_spec("plain"))
    pod["spec"]["containers"][0]["args"] = ["--password", p.mark("Pod.args")]
    pod["spec"]["containers"][0]["$unknown"] = _unknown(p.mark("Pod.unknown.container"))
    pod["$unknown"] = _unknown(p.mark("Pod.unknown.top"))
    pod["metadata"]["annotations"] = {"example.com/token": p.mark("Pod.annotation"),
                                      LAST_APPLIED_ANNOTATION: "not json " + p.mark("Pod.applied.notjson")}
    pod["metadata"]["labels"] = {"example.com/secret-label": p.mark("Pod.label"), "app": "web"}
    p.put("Pod", "pod-extras", codec.encode(pod))

    # A Pod stored as JSON (an APIServer with JSON storage).
    pj = obj("Pod", name="pod-json", spec=pod_spec(p.mark("Pod.json")))
    p.put("Pod", "pod-json", json.dumps(pj).encode())

    # Old kinds with env lists of their own: PodPreset.
    preset = {"apiVersion": "settings.k8s.io/v1alpha1", "kind": "PodPreset",
              "metadata": {"name": "preset", "namespace": "ns", "uid": "uid-preset"},
              "spec": {"env": [{"name": "A", "value": p.mark("PodPreset.env")}]}}
    p.put("PodPreset", "preset", codec.encode(preset))

    # Workload history: ControllerRevision data as JSON, as a nested object, as a nested Secret, as junk.
    sts = obj("StatefulSet", name="sts", spec=pod_spec(p.mark("ControllerRevision.nested")))
    patch = {"spec": {"template": {"$patch": "replace",
                                   "spec": pod_spec(p.mark("ControllerRevision.json"))}}}
    base = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "revision": 1,
            "metadata": {"name": "rev-json", "namespace": "ns", "uid": "uid-rev-json"}, "data": patch}
    p.put("ControllerRevision", "rev-json", codec.encode(base))
    for name, raw in (
        ("rev-object", codec.encode(sts)),
        ("rev-secret", codec.encode(obj("Secret", name="s", stringData={"k": p.mark("ControllerRevision.secret")}))),
        ("rev-junk", b"\x01junk " + p.mark("ControllerRevision.junk").encode()),
    ):
        cr = copy.deepcopy(base)
        cr["metadata"] = {"name": name, "namespace": "ns", "uid": f"uid-{name}"}
        cr["data"] = {}
        p.put("ControllerRevision", name, _with_raw(cr, raw))

    # Secrets: data, stringData, and a last-applied that claims to be a ConfigMap.
    sec = obj("Secret", name="sec", data={"k": base64.b64encode(p.mark("Secret.data").encode()).decode()},
              stringData={"t": p.mark("Secret.stringData")}, type="Opaque")
    sec["metadata"]["annotations"] = {LAST_APPLIED_ANNOTATION: json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": p.mark("Secret.applied")}})}
    p.put("Secret", "sec", codec.encode(sec), passes=False)

    # ConfigMap data (a user rule).
    p.put("ConfigMap", "cm", codec.encode(obj("ConfigMap", name="cm", data={"password": p.mark("ConfigMap.data")})))

    # Values that do not decode: never passed on, never in a log.
    good = codec.encode(obj("ConfigMap", name="cut", data={"password": p.mark("Undecodable.cut"), "z": "z" * 40}))
    p.put("ConfigMap", "cut", good[:-30], passes=False)
    p.put("ConfigMap", "junk", b"k8s\x00\x0a\x99junk" + p.mark("Undecodable.junk").encode(), passes=False)

    # Custom resources (JSON): a user rule, and a kind borrowing a built-in name.
    widget = {"apiVersion": "example.com/v1", "kind": "Widget",
              "metadata": {"name": "widget", "namespace": "ns", "uid": "uid-widget"},
              "spec": {"env": [{"name": "A", "value": p.mark("Widget.env")}]}}
    p.items.append(("/registry/example.com/widgets/ns/widget", json.dumps(widget).encode()))
    p.resources.add("widgets.example.com")
    p.passing.add("widget")
    fake = obj("Deployment", name="fake-deploy", spec=pod_spec(p.mark("CR.Deployment")))
    fake["apiVersion"] = "example.com/v1"
    p.items.append(("/registry/example.com/deployments/ns/fake-deploy", json.dumps(fake).encode()))
    p.resources.add("deployments.example.com")
    p.passing.add("fake-deploy")
    return p
