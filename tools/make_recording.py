"""Build the bundled recording (tattler_etcd/fixtures/cluster.yaml) from a live etcd.

    python tools/make_recording.py [--out fixtures/recordings/cluster.yaml] [--gap SECONDS]

Starts its own etcd (tests/support/etcd.py, loopback, temporary data dir),
loads objects of the four default kinds built from the upstream fixtures
(tests/data/k8s-api/HEAD, encoded with our codec; names and uids
varied: 6 namespaces, 5 nodes, 5 persistent volumes, 40 pods with two
containers and a few env vars each, one of them holding a password in an env
value and in its last-applied annotation), and records a real
:class:`~tattler_etcd.readers.etcd.EtcdReader` run through
``tattler_etcd.replay``, spread over real time so that a replay's batch
windows (5 s by default) split it as they would have split the live run:

1. t = 0: the initial list (ADD for every object). The watches of pods and
   persistent volumes are held at the recorder; nodes and namespaces watch.
2. t = 1 gap: a burst of writes, one every ``spacing`` seconds: the node and
   namespace changes arrive as watch events; the pod and volume changes are
   missed by the held watches, and etcd is compacted past them, so when they
   are let go (one resource after the other) each is cancelled by the
   compaction and the reader relists it: SNAPSHOT for what is there, DELETE
   for what vanished.
3. t = 2 gaps and t = 3 gaps: two more bursts of adds, updates and deletes,
   seen as watch events; the recording stops after the last of them, cutting
   the streams on a line boundary.

The recording notes when each response and watch line arrived, and a replay
paces them on its virtual clock. Everything is deterministic but the bytes of
etcd's headers (cluster and member ids, the port) and the exact timing: the
entries a replay yields are the same on every rebuild (each resource's in the
same order), which tests/test_record_etcd.py checks by re-recording with
short gaps.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = ROOT / "tests" / "data" / "k8s-api" / "HEAD"
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
    # The fixture fills every field; a real Pod has few volume sources and no exotic features.
    for field in ("volumes", "initContainers", "ephemeralContainers", "affinity", "topologySpreadConstraints",
                  "resourceClaims", "schedulingGroup", "evictionResponders", "hostAliases", "readinessGates",
                  "schedulingGates", "overhead", "resources", "hostnameOverride", "os"):
        spec.pop(field, None)
    for field in ("initContainerStatuses", "ephemeralContainerStatuses", "resourceClaimStatuses",
                  "extendedResourceClaimStatus", "nodeAllocatableResourceClaimStatuses", "volumeHealth",
                  "resize", "resources", "allocatedResources"):
        status.pop(field, None)
    c = spec["containers"][0]
    for field in ("resizePolicy", "lifecycle", "startupProbe", "volumeMounts", "volumeDevices", "restartPolicyRules",
                  "envFrom"):
        c.pop(field, None)
    return pod


#: The initial pods: (app, namespace, how many). 40 in all, one of them the billing pod with the secret.
_APPS = (("web", "default", 8), ("api", "default", 6), ("cart", "shop", 5), ("worker", "batch-jobs", 6),
         ("prometheus", "monitoring", 2), ("grafana", "monitoring", 1), ("alertmanager", "monitoring", 1),
         ("ingress-nginx", "ingress", 3), ("coredns", "kube-system", 2), ("kube-proxy", "kube-system", 5))
_NAMESPACES = ("default", "kube-system", "shop", "monitoring", "batch-jobs", "ingress")
_NODES = ("node-a1", "node-a2", "node-a3", "node-b1", "node-b2")
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _suffix(seed: str, n: int) -> str:
    """A deterministic Kubernetes-looking name suffix."""
    h = int(uuid.uuid5(_NS, seed).hex, 16)
    out = ""
    for _ in range(n):
        h, k = divmod(h, len(_ALPHABET))
        out += _ALPHABET[k]
    return out


def pod_name(app: str, i: int) -> str:
    """``web-7d9f6-xk2lp`` style (a ReplicaSet's hash, then the pod's)."""
    return f"{app}-{_suffix(app, 5)}-{_suffix(f'{app}/{i}', 5)}"


class Cluster:
    """The objects, named and uid'd deterministically, and the writes that change them."""

    def __init__(self, testdata: Path = TESTDATA) -> None:
        self.base = {
            "Pod": _pod_base(testdata),
            "Node": _fixture("Node", testdata),
            "Namespace": _fixture("Namespace", testdata),
            "PersistentVolume": _fixture("PersistentVolume", testdata),
        }

    def make(self, kind: str, name: str, namespace: str | None = None) -> tuple[str, dict[str, Any]]:
        obj = copy.deepcopy(self.base[kind])
        meta = obj["metadata"]
        meta["name"] = name
        meta["uid"] = str(uuid.uuid5(_NS, f"{kind}/{namespace}/{name}"))
        app = name.rsplit("-", 2)[0] if kind == "Pod" else name
        meta["labels"] = {"app.kubernetes.io/name": app, "tier": "demo"}
        if namespace:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if kind == "Pod":
            self._pod(obj, app, name)
        key = f"/registry/{_SEGMENT[kind]}/" + (f"{namespace}/{name}" if namespace else name)
        return key, obj

    @staticmethod
    def _pod(obj: dict[str, Any], app: str, name: str) -> None:
        spec = obj["spec"]
        main = spec["containers"][0]
        main.update(name=app, image=f"registry.example.com/{app}:1.{len(app) % 7}.3",
                    command=[f"/usr/local/bin/{app}"], args=["--port=8080", "--log-format=json"],
                    workingDir="/srv")
        main["env"] = [{"name": "LOG_LEVEL", "value": "info"}, {"name": "PORT", "value": "8080"},
                       {"name": "APP_NAME", "value": app}, {"name": "REGION", "value": "eu-west-1"}]
        sidecar = copy.deepcopy(main)
        sidecar.update(name="log-shipper", image="registry.example.com/log-shipper:2.4.0",
                       command=["/bin/shipper"], args=["--from=/var/log/app"])
        sidecar["env"] = [{"name": "SHIP_TO", "value": "logs.example.com:5140"}, {"name": "BUFFER_MB", "value": "16"}]
        spec["containers"] = [main, sidecar]
        spec["nodeName"] = _NODES[int(uuid.uuid5(_NS, name).hex, 16) % len(_NODES)]
        obj["status"]["phase"] = "Running"

    def secret_pod(self) -> tuple[str, dict[str, Any]]:
        key, pod = self.make("Pod", "billing-api-5c7d9-qx2vd", "shop")
        env = [*pod["spec"]["containers"][0]["env"], {"name": "DB_PASSWORD", "value": PLANTED_SECRET}]
        pod["spec"]["containers"][0]["env"] = env
        applied = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "billing-api"},
                   "spec": {"containers": [{"name": "billing-api", "env": env}]}}
        pod["metadata"]["annotations"] = {
            "kubectl.kubernetes.io/last-applied-configuration": json.dumps(applied, separators=(",", ":")) + "\n",
        }
        return key, pod


Write = tuple[str, str, dict[str, Any] | None]  # ("put" | "delete", key, object)


def pods(app: str) -> list[tuple[str, str]]:
    """The initial (name, namespace) of an app's pods."""
    for a, ns, n in _APPS:
        if a == app:
            return [(pod_name(app, i), ns) for i in range(n)]
    raise KeyError(app)


def initial(c: Cluster) -> list[Write]:
    out: list[Write] = []
    for ns in _NAMESPACES:
        out.append(("put", *c.make("Namespace", ns)))
    for n in _NODES:
        out.append(("put", *c.make("Node", n)))
    for i in range(5):
        out.append(("put", *c.make("PersistentVolume", f"pv-data-{i:04d}")))
    for app, _ns, _n in _APPS:
        for name, ns in pods(app):
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


def _pod(c: Cluster, app: str, i: int, ns: str) -> Write:
    return ("put", *c.make("Pod", pod_name(app, i), ns))


def _delete(c: Cluster, kind: str, name: str, ns: str | None = None) -> Write:
    return ("delete", c.make(kind, name, ns)[0], None)


def burst_1_seen(c: Cluster) -> list[Write]:
    """The first burst's node and namespace changes: their watches see them as events."""
    return [
        ("put", *c.make("Namespace", "staging")),
        _updated(c, "Node", "node-b1", None, _label("cordoned")),
        ("put", *c.make("Node", "node-c1")),
    ]


def burst_1_missed(c: Cluster) -> list[Write]:
    """The first burst's pod and volume changes, missed by the held watches: the compaction makes them relist."""
    web, api, worker = pods("web"), pods("api"), pods("worker")
    return [
        _pod(c, "web", 8, "default"),
        _pod(c, "web", 9, "default"),
        _updated(c, "Pod", *api[0], _label("canary")),
        _delete(c, "Pod", *web[1]),
        _pod(c, "staging-smoke", 0, "staging"),
        _updated(c, "PersistentVolume", "pv-data-0001", None, _label("retain")),
        _delete(c, "Pod", *worker[5]),
        _delete(c, "PersistentVolume", "pv-data-0004"),
        _updated(c, "Pod", *api[1], _label("canary")),
    ]


def burst_2(c: Cluster) -> list[Write]:
    """Changes the reader sees as watch events: a rollout, a new namespace, scale-down."""
    api, worker, cart = pods("api"), pods("worker"), pods("cart")
    return [
        ("put", *c.make("Namespace", "tmp-ci")),
        _pod(c, "ci-runner", 0, "tmp-ci"),
        _updated(c, "Pod", *api[2], _label("v2")),
        _updated(c, "Pod", *api[3], _label("v2")),
        _updated(c, "Pod", "billing-api-5c7d9-qx2vd", "shop", _label("v2")),
        _delete(c, "Pod", *worker[4]),
        _delete(c, "Pod", *worker[3]),
        _updated(c, "PersistentVolume", "pv-data-0002", None, _label("retain")),
        _pod(c, "cart", 5, "shop"),
        _updated(c, "Pod", *cart[0], _phase("Pending")),
        _updated(c, "Node", "node-a3", None, _label("draining")),
    ]


def burst_3(c: Cluster) -> list[Write]:
    """The last burst: jobs finish, the temporary namespace goes, a node leaves."""
    web = pods("web")
    return [
        _updated(c, "Pod", pod_name("ci-runner", 0), "tmp-ci", _phase("Succeeded")),
        _delete(c, "Pod", pod_name("ci-runner", 0), "tmp-ci"),
        _delete(c, "Namespace", "tmp-ci"),
        _updated(c, "Pod", *web[0], _phase("Failed")),
        _delete(c, "Pod", *web[0]),
        _pod(c, "web", 10, "default"),
        _delete(c, "Node", "node-c1"),
        _updated(c, "Pod", pod_name("staging-smoke", 0), "staging", _phase("Succeeded")),
    ]


def apply(etcd: Any, writes: list[Write]) -> int:
    """Apply ``writes`` one by one (one revision each); returns the last revision."""
    from tattler_etcd import codec

    rev = 0
    for op, key, obj in writes:
        rev = etcd.put(key, codec.encode(obj)) if op == "put" else etcd.delete(key)
    return rev


async def apply_spaced(etcd: Any, writes: list[Write], spacing: float) -> int:
    """Apply ``writes`` one every ``spacing`` seconds (a burst, as a cluster makes them)."""
    rev = 0
    for n, write in enumerate(writes):
        if n:
            await trio.sleep(spacing)
        rev = await trio.to_thread.run_sync(apply, etcd, [write])
    return rev


def _watch_of(*segments: str) -> Callable[[Any], bool]:
    """A recorder gate predicate: the watch request of one of these resources (by its key)."""
    import base64

    keys = {base64.b64encode(f"/registry/{s}/".encode()).decode() for s in segments}

    def predicate(request: Any) -> bool:
        from tattler_etcd.replay import is_watch_request

        if not is_watch_request(request):
            return False
        try:
            return json.loads(request.content)["create_request"]["key"] in keys
        except (ValueError, KeyError, TypeError):
            return False

    return predicate


async def record_scenario(
    etcd: Any, out: str | Path, testdata: Path = TESTDATA, *, gap: float = 5.5, spacing: float = 0.15,
) -> Any:
    """Load, record, burst + compact, burst, burst; returns the written file's RecordingInfo.

    ``gap``: seconds between the phases (more than the default 5 s batch
    window, so each lands in its own batch); ``spacing``: seconds between the
    writes of a burst.
    """
    from tattler_etcd.replay import Recorder, is_watch_request, scrub_served_object, scrub_stored_value
    from tattler_etcd.replay._record import record_etcd

    c = Cluster(testdata)
    await trio.to_thread.run_sync(apply, etcd, initial(c))
    seen, missed, second, third = burst_1_seen(c), burst_1_missed(c), burst_2(c), burst_3(c)
    recorder = Recorder(scrub_value=scrub_stored_value, scrub_object=scrub_served_object,
                        max_events=len(seen) + len(second) + len(third))
    pods_watch = recorder.hold(_watch_of("pods"))
    volumes_watch = recorder.hold(_watch_of("persistentvolumes"))
    other_watches = recorder.hold(_watch_of("minions", "namespaces"))
    result: dict[str, Any] = {}

    async def record() -> None:
        result["info"] = await record_etcd(out, endpoint=etcd.url, recorder=recorder)

    with trio.fail_after(60 + 4 * gap):
        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            nursery.start_soon(record)
            # Every resource listed; nodes and namespaces watch, pods and volumes wait at the recorder.
            await pods_watch.wait_held(1)
            await volumes_watch.wait_held(1)
            await other_watches.wait_held(2)
            other_watches.release()
            await trio.sleep_until(start + gap)
            # One burst, in one order (seen and missed interleaved), then the compaction.
            burst = [w for pair in zip(missed, [*seen, *[None] * len(missed)], strict=False) for w in pair if w]
            rev = await apply_spaced(etcd, burst, spacing)
            await trio.to_thread.run_sync(etcd.compact, rev)
            later_watches = recorder.hold(is_watch_request)
            # One resource after the other, so the file holds one order of relists.
            pods_watch.release()
            await later_watches.wait_held(1)  # pods relisted, watching again
            volumes_watch.release()
            await later_watches.wait_held(2)
            later_watches.release()
            await trio.sleep_until(start + 2 * gap)
            await apply_spaced(etcd, second, spacing)
            await trio.sleep_until(start + 3 * gap)
            await apply_spaced(etcd, third, spacing)
    return result["info"]


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from tests.support.etcd import EtcdServer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"where to write (default: {DEFAULT_OUT})")
    parser.add_argument("--gap", type=float, default=5.5, help="seconds between the phases (default: 5.5)")
    args = parser.parse_args(argv)
    etcd = EtcdServer(progress_notify="10m")
    etcd.start()
    try:
        info = trio.run(functools.partial(record_scenario, etcd, args.out, gap=args.gap))
    finally:
        etcd.close()
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out}: {info.interactions} interactions, {info.watch_events} watch events, {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
