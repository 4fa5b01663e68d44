"""Objects for the fake APIServer: small realistic ones, generated, or the upstream fixtures."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

__all__ = ["fixture_object", "make_configmap", "make_pod", "make_widget"]


def make_pod(i: int, namespace: str = "default", *, node: str = "node-1") -> dict[str, Any]:
    """A small but realistic Pod (about 2 KB of JSON)."""
    name = f"pod-{i:05d}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": f"app-{i % 50}", "tier": "web"},
            "annotations": {"example.com/build": f"b{i}"},
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Always",
            "containers": [{
                "name": "main",
                "image": f"registry.example.com/app:{i % 7}",
                "args": ["--port=8080", f"--id={i}"],
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": "1", "memory": "256Mi"}},
                "env": [{"name": "MODE", "value": "prod"}],
            }],
        },
        "status": {"phase": "Running", "podIP": f"10.0.{i // 250 % 250}.{i % 250}",
                   "conditions": [{"type": "Ready", "status": "True",
                                   "lastTransitionTime": "2026-01-01T00:00:05Z"}]},
    }


def make_configmap(name: str, namespace: str = "default", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace}, "data": dict(data)}


def make_widget(i: int, namespace: str = "default") -> dict[str, Any]:
    """A custom resource (widgets.example.com/v1): JSON only."""
    return {"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": f"widget-{i}", "namespace": namespace}, "spec": {"size": i}}


def fixture_object(testdata: Path, group_version_kind: str, name: str | None = None) -> dict[str, Any]:
    """An upstream fixture (``core.v1.Pod``) as served, optionally renamed."""
    obj = json.loads((testdata / f"{group_version_kind}.json").read_text())
    obj = copy.deepcopy(obj)
    meta = obj.setdefault("metadata", {})
    for k in ("resourceVersion", "uid", "deletionTimestamp", "deletionGracePeriodSeconds"):
        meta.pop(k, None)
    if name:
        meta["name"] = name
    return obj
