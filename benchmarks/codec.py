"""Codec speed per object, beside baselines measured in the same run.

Objects: a realistic small Pod (built here: 2 containers, 10 env vars, 3
volumes, managedFields, status; about 3 KB of protobuf) and the upstream
fixture Pod (every field filled, about 14 KB).

Baselines: ``json.loads`` and ``orjson.loads`` of the same object in JSON, and
``json.loads`` plus the kubernetes client's model for it (``V1Pod.from_dict``),
which is what a Python client pays per object today. ``decode`` is measured
with the C decoder (when built) and in pure Python; the JSON-out rows are one
entry's JSON line as the JSON-lines output writes it: written by C straight
from the wire bytes (``codec.json_bytes``, what ``to_json_bytes`` does now)
beside the dict path it replaced (C decode, then orjson through jsonout).

    python benchmarks/codec.py [--fixtures tests/data/k8s-api/HEAD] [--repeat 5]

Prints medians in microseconds. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from tattler_etcd import codec, jsonout
from tattler_etcd.codec import _fast
from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.models import to_model
from tattler_etcd.pipeline.redaction import Redactor
from tattler_etcd.pipeline.safety import scrub_value

#: The default rules but unknown fields kept: what dropping them costs is the difference.
KEEP_UNKNOWN = Redactor(keep_unknown_fields=True)

ENV_PATHS = [("spec", "containers", "*", "env", "*", "value"), ("spec", "initContainers", "*", "env", "*", "value")]
ENV_PATHS_T = tuple(ENV_PATHS)  # the same paths as one tuple, as the safety stage passes them


def small_pod() -> dict[str, Any]:
    """A Pod as a controller-made one looks: 2 containers, 10 env vars, 3 volumes."""
    def container(name: str, image: str, envs: int, port: int) -> dict[str, Any]:
        return {
            "name": name,
            "image": image,
            "args": ["--port", str(port), "--log-level=info"],
            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
            "env": [{"name": f"ENV_{name.upper()}_{i}", "value": f"value-{i}-" + "x" * 12} for i in range(envs)],
            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/app"},
                             {"name": "kube-api-access-abcde", "readOnly": True,
                              "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": port, "scheme": "HTTP"},
                              "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent",
        }

    ts = "2024-05-01T10:00:00Z"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-7d9f8b6c5d-x2x4z",
            "generateName": "web-7d9f8b6c5d-",
            "namespace": "production",
            "uid": "5f0c9a4e-3f7b-4f7e-9d7a-2b1c3d4e5f60",
            "resourceVersion": "123456789",
            "creationTimestamp": ts,
            "labels": {"app": "web", "pod-template-hash": "7d9f8b6c5d", "tier": "frontend",
                       "app.kubernetes.io/version": "1.2.3", "team": "storefront"},
            "annotations": {"kubernetes.io/psp": "restricted", "prometheus.io/scrape": "true",
                            "prometheus.io/port": "8080", "kubectl.kubernetes.io/restartedAt": "2024-05-01T09:58:12Z",
                            "cluster-autoscaler.kubernetes.io/safe-to-evict": "true",
                            "checksum/config": "3f9a1c0e5b7d2a4f6e8c0b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8b6c5d",
                                 "uid": "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9", "controller": True,
                                 "blockOwnerDeletion": True}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                               "time": ts, "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}}}}}],
        },
        "spec": {
            "volumes": [
                {"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}},
                {"name": "data", "emptyDir": {}},
                {"name": "kube-api-access-abcde", "projected": {"sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                ], "defaultMode": 420}},
            ],
            "containers": [container("web", "registry.example.com/web:1.2.3", 7, 8080),
                           container("sidecar", "registry.example.com/proxy:2.0", 3, 9090)],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "web",
            "serviceAccount": "web",
            "nodeName": "node-17",
            "securityContext": {"runAsNonRoot": True},
            "schedulerName": "default-scheduler",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": ts}
                           for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
            "hostIP": "10.0.3.17",
            "podIP": "10.244.3.21",
            "podIPs": [{"ip": "10.244.3.21"}],
            "startTime": ts,
            "containerStatuses": [
                {"name": n, "state": {"running": {"startedAt": ts}}, "lastState": {}, "ready": True,
                 "restartCount": 0, "image": img, "imageID": img + "@sha256:" + "ab" * 32,
                 "containerID": "containerd://" + "cd" * 32, "started": True}
                for n, img in (("web", "registry.example.com/web:1.2.3"), ("sidecar", "registry.example.com/proxy:2.0"))
            ],
            "qosClass": "Burstable",
        },
    }


def median_us(fn: Callable[[], Any], repeat: int) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    runs = timer.repeat(repeat=repeat, number=number)
    return statistics.median(runs) / number * 1e6


def bench(label: str, obj: dict[str, Any], repeat: int) -> list[tuple[str, float]]:
    value = codec.encode(obj)
    canon = codec.decode(value)
    text = json.dumps(canon).encode()
    assert json.loads(text) == canon
    print(f"\n{label}: {len(value):,} bytes protobuf, {len(text):,} bytes JSON")
    line = {"change": "add", "source": "etcd", "uid": "u", "object": canon}
    rows = [
        ("baseline: json.loads", median_us(lambda: json.loads(text), repeat)),
        ("baseline: json.loads + V1Pod", median_us(lambda: to_model(json.loads(text)), repeat)),
        ("baseline: orjson.loads", median_us(lambda: orjson.loads(text), repeat)),
        ("peek (uid, name, namespace, rv, kind)", median_us(lambda: codec.peek(value), repeat)),
        ("decode -> dict" + (" (C decoder)" if _fast.enabled() else " (pure Python)"),
         median_us(lambda: codec.decode(value), repeat)),
        ("decode -> dict (pure Python)", _pure(lambda: median_us(lambda: codec.decode(value), repeat))),
        ("JSON line out: json.dumps (before)",
         median_us(lambda: json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode(), repeat)),
        ("JSON line out: jsonout.dumps (orjson)", median_us(lambda: jsonout.dumps(line), repeat)),
        ("Entry.from_value + to_json_bytes", median_us(
            lambda: Entry.from_value(value, change=ChangeType.ADD, source=SourceType.ETCD, resource_version="7")
            .to_json_bytes(), repeat)),
        ("  the same, dict path (C decode + orjson)", median_us(lambda: _dict_line(value), repeat)),
        ("JSON out from the wire (codec.json_bytes)", median_us(lambda: codec.json_bytes(value, "7"), repeat)),
        ("JSON out: decode + jsonout.dumps", median_us(lambda: jsonout.dumps(codec.decode(value)), repeat)),
        ("encode <- dict", median_us(lambda: codec.encode(canon), repeat)),
        ("redact env values (3 paths)", median_us(lambda: codec.redact(value, ENV_PATHS, lambda s: "***"), repeat)),
        ("redact, nothing to change", median_us(lambda: codec.redact(value, [("metadata", "annotations", "absent")], lambda s: s), repeat)),
        ("parse (envelope; object parsed lazily)", median_us(lambda: codec.parse(value), repeat)),
        ("parse + redact_parsed env (no serialize)",
         median_us(lambda: codec.redact_parsed(codec.parse(value), ENV_PATHS_T, lambda s: "***"), repeat)),
        ("safety scrub_value (Pod rules, to bytes)", median_us(lambda: scrub_value(value, "Pod"), repeat)),
        ("  the same, unknown fields kept",
         median_us(lambda: scrub_value(value, "Pod", rules=KEEP_UNKNOWN), repeat)),
        ("safety scrub_value, C module off", _pure(lambda: median_us(lambda: scrub_value(value, "Pod"), repeat))),
    ]
    base = rows[1][1]
    for name, us in rows:
        print(f"  {name:<40} {us:9.1f} us   {base / us:6.1f}x vs json+model")
    return rows


def _dict_line(value: bytes) -> bytes:
    """Entry.to_json_bytes as it was before the C emitter: decode to a dict, then head and dict through jsonout."""
    entry = Entry.from_value(value, change=ChangeType.ADD, source=SourceType.ETCD, resource_version="7")
    head = jsonout.dumps(entry._json_head())
    return b"".join((head[:-1], b',"object":', jsonout.dumps(entry._decode()), b"}"))


def _pure(fn: Callable[[], float]) -> float:
    """``fn`` measured with the C decoder turned off."""
    was = _fast.enabled()
    _fast.set_enabled(False)
    try:
        return fn()
    finally:
        _fast.set_enabled(was)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path(__file__).resolve().parents[1] / "tests" / "data" / "k8s-api" / "HEAD"
    parser.add_argument("--fixtures", type=Path, default=default)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    bench("small realistic Pod", small_pod(), args.repeat)
    fixture = args.fixtures / "core.v1.Pod.json"
    if fixture.is_file():
        bench("fixture Pod (every field filled)", json.loads(fixture.read_text()), args.repeat)
    else:
        print(f"(no fixture Pod at {fixture})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
