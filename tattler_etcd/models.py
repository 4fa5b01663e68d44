"""The bridge to the kubernetes package's typed models (``V1Pod``, ``V1Node``...).

Only :attr:`tattler_etcd.data.Entry.object` uses it. The class is found from
the object's own apiVersion and kind, by the kubernetes package's naming rule
(``apps/v1`` ``Deployment`` -> ``V1Deployment``; a kind two groups share gets the
group as a prefix, ``events.k8s.io/v1`` ``Event`` -> ``EventsV1Event``), so no
table needs editing when a kind is added. Kinds without a model (custom
resources, kinds newer than the installed package) come back as the dict.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["model_class", "to_model"]


@functools.lru_cache(maxsize=512)
def model_class(api_version: str, kind: str) -> type[Any] | None:
    """The kubernetes model class for ``api_version``/``kind``, or None."""
    # Here, not at the top: the kubernetes package takes ~140 ms to import, and
    # only a program that reads Entry.object needs it (tests/test_layers.py allows it).
    from kubernetes import client

    group, _, version = api_version.rpartition("/")
    version_part = version[:1].upper() + version[1:]
    group_word = group.split(".")[0] if group else "core"
    group_part = "".join(w[:1].upper() + w[1:] for w in group_word.split("-"))
    for name in (f"{group_part}{version_part}{kind}", f"{version_part}{kind}"):
        cls = getattr(client, name, None)
        if isinstance(cls, type) and hasattr(cls, "from_dict"):
            return cls
    return None


def to_model(raw: dict[str, Any]) -> Any:
    """``raw`` as its kubernetes model, or ``raw`` itself when there is none."""
    cls = model_class(str(raw.get("apiVersion", "")), str(raw.get("kind", "")))
    if cls is None:
        return raw
    return cls.from_dict(raw)
