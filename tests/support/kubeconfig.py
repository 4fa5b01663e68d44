"""A kubeconfig file for the fake APIServer: one cluster, one user, context ``fake``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["write_kubeconfig"]


def write_kubeconfig(path: Path, server: str, user: dict[str, Any], *, cluster: dict[str, Any] | None = None,
                     extra_contexts: bool = False) -> Path:
    """Write it to ``path`` (current context ``fake``, user ``reader``); ``extra_contexts`` adds ``other``."""
    doc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "reader", "user": user}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "reader"}}],
    }
    if extra_contexts:
        doc["users"].append({"name": "nobody", "user": {"token": "wrong"}})
        doc["contexts"].append({"name": "other", "context": {"cluster": "fake", "user": "nobody"}})
    path.write_text(yaml.safe_dump(doc))
    return path
