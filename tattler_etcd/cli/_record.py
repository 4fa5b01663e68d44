"""``tattler-etcd record``: capture a reader's HTTP exchanges into a cassette."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("record", help="record a live run into a cassette for replay", description=__doc__)
    p.set_defaults(func=lambda args: 2)
