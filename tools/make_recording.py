"""Build the bundled recording (tattler_etcd/fixtures/cluster.yaml) from a live etcd.

    python tools/make_recording.py [--out fixtures/recordings/cluster.yaml]

Starts its own etcd (tests/support/etcd.py, loopback, temporary data dir),
loads objects of the four default kinds built from the upstream fixtures
(../shared/k8s-api-testdata/HEAD, encoded with our codec; names and uids
varied, one Pod with a password in an env value and in its last-applied
annotation), and records a real :class:`~tattler_etcd.readers.etcd.EtcdReader`
run through ``tattler_etcd.replay``:

1. the initial list (ADD for every object);
2. while the reader's watches are held at the recorder, adds, updates and
   deletes land and etcd is compacted past the reader's revision, so every
   watch is cancelled by the compaction and the reader relists (SNAPSHOT for
   what is there, DELETE for what vanished);
3. more adds, updates and deletes arrive on the new watches; the recording
   stops after the last of them, cutting the streams on a line boundary.

Everything is deterministic but the bytes of etcd's headers (cluster and
member ids, the port): the entries a replay yields are the same on every
rebuild, which tests/test_replay_bundled.py checks by re-recording.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = ROOT.parent / "shared" / "k8s-api-testdata" / "HEAD"
#: The real file is package data (installed with the package); fixtures/recordings/cluster.yaml links to it.
DEFAULT_OUT = ROOT / "tattler_etcd" / "fixtures" / "cluster.yaml"

#: The password planted in one Pod; it must never appear in the recording.
PLANTED_SECRET = "Tr0ub4dor-planted-in-env-3e1f"

_NS = uuid.UUID("6f1c7c1e-7d43-4b8e-9a55-1b7a7e0f0c11")

#: Resource -> etcd key segment (nodes live under "minions").
_SEGMENT = {"Pod": "pods", "Node": "minions", "Namespace": "namespaces", "PersistentVolume": "persistentvolumes"}


def _fixture(kind: str, testdata: Path) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads((testdata / f"core.v1.{kind}.json").read_text())
    meta = obj["metadata"]
    # What etcd holds: no resourceVersion; and nothing only a live object being deleted has.
    for field in ("resourceVersion", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "managedFields", "ownerReferences", "finalizers", "generateName"):
        meta.pop(field, None)
    meta["annotations"] = {}
    return obj


def _pod_base(testdata: Path) -> dict[str, Any]:
    pod = _fixture("Pod", testdata)
    spec, status = pod["spec"], pod["status"]
    # The fixture fills every field; a real Pod has one container and few volume sources.
    for field in ("volumes", "initContainers", "ephemeralContainers", "affinity", "topologySpreadConstraints",
                  "resourceClaims", "schedulingGroup", "evictionResponders", "hostAliases", "readinessGates",
                  "schedulingGates", "overhead", "resources", "hostnameOverride", "os"):
        spec.pop(field, None)
    for field in ("initContainerStatuses", "ephemeralContainerStatuses", "resourceClaimStatuses",
                  "extendedResourceClaimStatus", "nodeAllocatableResourceClaimStatuses", "volumeHealth",
                  "resize", "resources", "allocatedResources"):
        status.pop(field, None)
    c = spec["containers"][0]
    for field in ("resizePolicy", "lifecycle", "startupProbe", "volumeMounts", "volumeDevices", "restartPolicyRules"):
        c.pop(field, None)
    c["env"] = [{"name": "LOG_LEVEL", "value": "info"}]
    return pod


class Cluster:
    """The objects, named and uid'd deterministically, and the writes that change them."""

    def __init__(self, testdata: Path = TESTDATA) -> None:
        self.base = {
            "Pod": _pod_base(testdata),
            "Node": _fixture("Node", testdata),
            "Namespace": _fixture("Namespace", testdata),
            "PersistentVolume": _fixture("PersistentVolume", testdata),
        }
        self.objects: dict[str, dict[str, Any]] = {}

    def make(self, kind: str, name: str, namespace: str | None = None) -> tuple[str, dict[str, Any]]:
        obj = copy.deepcopy(self.base[kind])
        meta = obj["metadata"]
        meta["name"] = name
        meta["uid"] = str(uuid.uuid5(_NS, f"{kind}/{namespace}/{name}"))
        meta["labels"] = {"app.kubernetes.io/name": name.rsplit("-", 2)[0], "tier": "demo"}
        if namespace:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if kind == "Pod":
            obj["spec"]["nodeName"] = "node-a1"
            obj["status"]["phase"] = "Running"
        key = f"/registry/{_SEGMENT[kind]}/" + (f"{namespace}/{name}" if namespace else name)
        return key, obj

    def secret_pod(self) -> tuple[str, dict[str, Any]]:
        key, pod = self.make("Pod", "billing-api-5c7d9-qx2vd", "shop")
        env = [{"name": "LOG_LEVEL", "value": "info"}, {"name": "DB_PASSWORD", "value": PLANTED_SECRET}]
        pod["spec"]["containers"][0]["env"] = env
        applied = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "billing-api"},
                   "spec": {"containers": [{"name": "api", "env": env}]}}
        pod["metadata"]["annotations"] = {
            "kubectl.kubernetes.io/last-applied-configuration": json.dumps(applied, separators=(",", ":")) + "\n",
        }
        return key, pod


Write = tuple[str, str, dict[str, Any] | None]  # ("put" | "delete", key, object)


def initial(c: Cluster) -> list[Write]:
    out: list[Write] = []
    for ns in ("default", "shop", "monitoring"):
        out.append(("put", *c.make("Namespace", ns)))
    for n in ("node-a1", "node-a2", "node-b1"):
        out.append(("put", *c.make("Node", n)))
    for i in range(3):
        out.append(("put", *c.make("PersistentVolume", f"pv-data-{i:04d}")))
    for name, ns in (("web-7d9f6-xk2lp", "default"), ("web-7d9f6-m8q4t", "default"),
                     ("cart-6b5c8-d7k2w", "shop"), ("prometheus-0", "monitoring")):
        out.append(("put", *c.make("Pod", name, ns)))
    out.append(("put", *c.secret_pod()))
    return out


def _updated(c: Cluster, kind: str, name: str, ns: str | None, change: Callable[[dict[str, Any]], None]) -> Write:
    key, obj = c.make(kind, name, ns)
    if kind == "Pod" and name.startswith("billing-api"):
        key, obj = c.secret_pod()
    change(obj)
    return ("put", key, obj)


def _label(value: str) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        obj["metadata"]["labels"]["rollout"] = value
    return change


def _phase(value: str) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        obj["status"]["phase"] = value
    return change


def during_gap(c: Cluster) -> list[Write]:
    """Changes the reader misses while its watches are held: compaction makes it relist."""
    return [
        ("put", *c.make("Pod", "web-7d9f6-r2n6c", "default")),
        _updated(c, "Pod", "cart-6b5c8-d7k2w", "shop", _label("canary")),
        _updated(c, "Node", "node-b1", None, _label("cordoned")),
        ("delete", c.make("Pod", "web-7d9f6-m8q4t", "default")[0], None),
        ("delete", c.make("PersistentVolume", "pv-data-0002")[0], None),
    ]


def while_watching(c: Cluster) -> list[Write]:
    """Changes the reader sees as watch events."""
    return [
        ("put", *c.make("Namespace", "batch")),
        ("put", *c.make("Pod", "report-28f4d-5m9tz", "batch")),
        _updated(c, "Pod", "web-7d9f6-xk2lp", "default", _phase("Succeeded")),
        _updated(c, "Pod", "billing-api-5c7d9-qx2vd", "shop", _label("v2")),
        _updated(c, "PersistentVolume", "pv-data-0001", None, _label("retain")),
        ("put", *c.make("Node", "node-b2")),
        ("delete", c.make("Pod", "prometheus-0", "monitoring")[0], None),
        _updated(c, "Pod", "report-28f4d-5m9tz", "batch", _phase("Succeeded")),
        ("delete", c.make("Pod", "report-28f4d-5m9tz", "batch")[0], None),
        ("delete", c.make("Namespace", "batch")[0], None),
    ]


def apply(etcd: Any, writes: list[Write]) -> int:
    """Apply ``writes`` one by one (one revision each); returns the last revision."""
    from tattler_etcd import codec

    rev = 0
    for op, key, obj in writes:
        rev = etcd.put(key, codec.encode(obj)) if op == "put" else etcd.delete(key)
    return rev


async def record_scenario(etcd: Any, out: str | Path, testdata: Path = TESTDATA) -> Any:
    """Load, record, change, compact, change; returns the written file's RecordingInfo."""
    from tattler_etcd.replay import Recorder, is_watch_request, scrub_served_object, scrub_stored_value
    from tattler_etcd.replay._record import DEFAULT_RESOURCES, record_etcd

    c = Cluster(testdata)
    await trio.to_thread.run_sync(apply, etcd, initial(c))
    later = while_watching(c)
    recorder = Recorder(scrub_value=scrub_stored_value, scrub_object=scrub_served_object, max_events=len(later))
    first_watches = recorder.hold(is_watch_request)
    result: dict[str, Any] = {}

    async def record() -> None:
        result["info"] = await record_etcd(out, endpoint=etcd.url, recorder=recorder)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(record)
            # Every resource listed; its watch waits at the recorder.
            await first_watches.wait_held(len(DEFAULT_RESOURCES))
            rev = await trio.to_thread.run_sync(apply, etcd, during_gap(c))
            await trio.to_thread.run_sync(etcd.compact, rev)
            second_watches = recorder.hold(is_watch_request)
            first_watches.release()
            # Each watch was cancelled by the compaction; each resource relisted and watches again.
            await second_watches.wait_held(len(DEFAULT_RESOURCES))
            second_watches.release()
            await trio.to_thread.run_sync(apply, etcd, later)
    return result["info"]


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from tests.support.etcd import EtcdServer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"where to write (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    etcd = EtcdServer(progress_notify="10m")
    etcd.start()
    try:
        info = trio.run(record_scenario, etcd, args.out)
    finally:
        etcd.close()
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out}: {info.interactions} interactions, {info.watch_events} watch events, {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
