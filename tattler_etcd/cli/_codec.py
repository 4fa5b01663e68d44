"""``tattler-etcd decode`` / ``encode``: one raw etcd value <-> JSON or YAML."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    for name in ("decode", "encode"):
        p = sub.add_parser(name, help=f"{name} one object", description=__doc__)
        p.set_defaults(func=lambda args: 2)
