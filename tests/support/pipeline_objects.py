"""Objects and processors for the pipeline tests: small, explicit, no fixtures needed."""

from __future__ import annotations

import copy
import json
from typing import Any

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.pipeline import Batch
from tattler_etcd.pipeline.safety import LAST_APPLIED_ANNOTATION, POD_SPEC_PATHS

WORKLOAD_KINDS = tuple(POD_SPEC_PATHS)

_API_VERSIONS = {
    "Pod": "v1", "PodTemplate": "v1", "ReplicationController": "v1",
    "Deployment": "apps/v1", "ReplicaSet": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1",
    "Job": "batch/v1", "CronJob": "batch/v1", "Secret": "v1", "ConfigMap": "v1",
}


def pod_spec(env_value: str = "s3cret", *, containers: int = 1, lists: tuple[str, ...] = ("containers",)) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for field in lists:
        spec[field] = [
            {"name": f"{field}-{i}", "image": "img", "env": [
                {"name": "PLAIN", "value": env_value},
                {"name": "FROM_REF", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ]}
            for i in range(containers)
        ]
    return spec


def obj(kind: str, *, name: str = "x", uid: str | None = None, rv: str = "1", namespace: str | None = "ns",
        spec: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """An object of ``kind`` with ``spec`` as its pod spec, placed where that kind keeps it."""
    meta: dict[str, Any] = {"name": name, "uid": uid or f"uid-{name}", "resourceVersion": rv}
    if namespace:
        meta["namespace"] = namespace
    o: dict[str, Any] = {"apiVersion": _API_VERSIONS.get(kind, "example.com/v1"), "kind": kind, "metadata": meta}
    if spec is not None and kind in POD_SPEC_PATHS:
        path = POD_SPEC_PATHS[kind]
        node = o
        for seg in path[:-1]:
            node = node.setdefault(seg, {})
        node[path[-1]] = spec
    o.update(extra)
    return o


def with_last_applied(o: dict[str, Any], applied: Any | None = None) -> dict[str, Any]:
    """``o`` carrying a last-applied annotation (default: a copy of itself, as kubectl writes it)."""
    if applied is None:
        applied = copy.deepcopy({k: v for k, v in o.items() if k != "status"})
        applied["metadata"] = {k: v for k, v in applied["metadata"].items() if k in ("name", "namespace")}
    text = applied if isinstance(applied, str) else json.dumps(applied, separators=(",", ":")) + "\n"
    o["metadata"].setdefault("annotations", {})[LAST_APPLIED_ANNOTATION] = text
    return o


def entry(o: dict[str, Any], *, change: ChangeType = ChangeType.ADD, source: SourceType = SourceType.ETCD) -> Entry:
    return Entry.from_dict(o, change=change, source=source)


def e(uid: str, rv: str = "1", *, change: ChangeType = ChangeType.UPDATE, source: SourceType = SourceType.ETCD,
      name: str | None = None) -> Entry:
    """A small ConfigMap entry for tests where only identity matters."""
    o = obj("ConfigMap", name=name or uid, uid=uid, rv=rv)
    return Entry.from_dict(o, change=change, source=source)


class Collect:
    """A processor that keeps every batch it gets (tests only: real processors must not keep them)."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    async def __call__(self, batch: Batch) -> None:
        self.batches.append(batch)

    @property
    def entries(self) -> list[Entry]:
        return [x for b in self.batches for x in b]
