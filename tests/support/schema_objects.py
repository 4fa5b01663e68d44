"""Objects of any kind built from the schema alone: every field filled, or one value at one path.

Test support: the safety tests must not trust the rules' own derivation, so
these walk the schema on their own (the generator's facts: fields, JSON names,
labels, special types) and build dicts the codec encodes.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

from tattler_etcd.codec._schema import SCHEMA, Field

Path = tuple[str, ...]

_SPECIAL_VALUES: dict[str, Any] = {
    "time": "2024-01-01T00:00:00Z", "microtime": "2024-01-01T00:00:00.000000Z", "duration": "1s",
    "quantity": "1", "intorstring": "x", "rawextension": {"a": 1}, "fieldsv1": {}, "stringlist": ["s"],
}
_SCALARS: dict[str, Any] = {
    "string": "s", "bytes": base64.b64encode(b"b").decode(), "int32": 1, "int64": 1, "uint32": 1, "uint64": 1,
    "bool": True, "double": 1.5, "float": 1.5,
}


def api_version_of(message: str) -> str:
    """The apiVersion serving ``message``'s package (the first one the schema lists)."""
    package = message.rpartition(".")[0]
    return next(av for av, pkg in SCHEMA.groups.items() if pkg == package)


def kind_messages() -> dict[str, list[str]]:
    """Kind name -> the object messages of that name (ObjectMeta at ``metadata``), as the schema holds them."""
    meta = f"{SCHEMA.meta_package}.ObjectMeta"
    packages = set(SCHEMA.groups.values())
    out: dict[str, list[str]] = {}
    for name, msg in SCHEMA.messages.items():
        if name.rpartition(".")[0] in packages and any(
                f.json_name == "metadata" and f.type == meta for f in msg.fields):
            out.setdefault(name.rpartition(".")[2], []).append(name)
    return out


def _fields(message: str) -> list[Field]:
    out: list[Field] = []
    for f in SCHEMA.messages[message].fields:
        if f.inline and f.is_message:
            out.extend(_fields(f.type))
        else:
            out.append(f)
    return out


def full_object(message: str, leaf: Callable[[str, Field], Any | None], *, max_depth: int = 14) -> dict[str, Any]:
    """An object of ``message`` with every field filled (one list element, one map entry).

    ``leaf(message, field)`` may give the value of a scalar field (None: the
    default). A type already on the way is not entered again (recursive types).
    """
    def fill(name: str, stack: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in _fields(name):
            value = one(name, f, stack)
            if value is not None:
                out[f.json_name] = [value] if f.label == "rep" else ({"k": value} if f.label == "map" else value)
        return out

    def one(parent: str, f: Field, stack: tuple[str, ...]) -> Any:
        msg = SCHEMA.messages.get(f.type)
        if msg is None:
            chosen = leaf(parent, f)
            return chosen if chosen is not None else _SCALARS[f.type]
        if msg.special is not None:
            return _SPECIAL_VALUES[msg.special]
        if f.type in stack or len(stack) >= max_depth:
            return None
        return fill(f.type, (*stack, f.type))

    obj = fill(message, (message,))
    obj["apiVersion"] = api_version_of(message)
    obj["kind"] = message.rpartition(".")[2]
    obj["metadata"] = {"name": "x", "namespace": "ns", "uid": "u"}
    return obj


def string_paths(message: str, *, max_depth: int = 9, limit: int = 400) -> Iterator[Path]:
    """JSON-name paths to text leaves of ``message`` (``"*"`` for list elements and map values)."""
    count = 0

    def walk(name: str, prefix: Path, stack: tuple[str, ...]) -> Iterator[Path]:
        nonlocal count
        for f in _fields(name):
            if count >= limit:
                return
            step: Path = (f.json_name, "*") if f.label in ("rep", "map") else (f.json_name,)
            msg = SCHEMA.messages.get(f.type)
            if msg is None:
                if f.type == "string":
                    count += 1
                    yield (*prefix, *step)
            elif msg.special is None and f.type not in stack and len(stack) < max_depth:
                yield from walk(f.type, (*prefix, *step), (*stack, f.type))

    yield from walk(message, (), (message,))


def object_with(message: str, path: Path, value: str) -> dict[str, Any]:
    """A minimal object of ``message`` holding ``value`` at ``path`` (built along the schema)."""
    def build(name: str, i: int) -> dict[str, Any]:
        for f in _fields(name):
            if f.json_name != path[i]:
                continue
            star = f.label in ("rep", "map")
            rest = i + (2 if star else 1)
            if rest >= len(path):
                inner: Any = value
            else:
                inner = build(f.type, rest)
            if f.label == "rep":
                return {f.json_name: [inner]}
            if f.label == "map":
                return {f.json_name: {"k": inner}}
            return {f.json_name: inner}
        raise KeyError(path[i])

    obj = build(message, 0)
    meta = obj.setdefault("metadata", {})
    for k, v in (("name", "x"), ("namespace", "ns"), ("uid", "u")):
        meta.setdefault(k, v)
    obj["apiVersion"] = api_version_of(message)
    obj["kind"] = message.rpartition(".")[2]
    return obj


def rule_text(kind: str, path: Path) -> str:
    """A user rule for ``path`` in ``kind`` (keys with dots or slashes in brackets)."""
    out = ""
    for elem in path:
        if elem == "*":
            out += "[*]"
        elif "." in elem or "/" in elem:
            out += f'["{elem}"]'
        else:
            out += f".{elem}" if out else elem
    return f"{kind}:{out}"
