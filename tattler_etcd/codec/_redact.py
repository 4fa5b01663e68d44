"""Edit leaf strings of an etcd value in place, without building its dict.

Why: the safety stage scrubs a few fields (env values, secret data, some
annotations) of most objects it sees. Converting every object to a dict and
back to bytes would cost more than the rest of the pipeline; parsing the
protobuf (microseconds in upb), editing the few leaves the paths reach and
re-serializing is cheap, and objects that contain nothing to scrub come back
as the very same bytes object.

Paths use JSON names, as the APIServer serves the object: ``"*"`` is every
element of a list or every value of a map, any other element of a map is a
key, a number is a list index. Inline (embedded) Go structs are transparent,
as in JSON. A path ending at a list or map of strings reaches each of them.
``fn`` gets ``str`` for string fields and ``bytes`` for bytes fields
(``Secret.data``: the decoded bytes, not base64); JSON values give ``str``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from tattler_etcd.codec._api import (
    DEFAULT_MAX_SIZE,
    _check,
    _envelope,
    _message_for,
    _parse_typed,
    is_json,
    wrap,
)
from tattler_etcd.codec._schema import SCHEMA, Field
from tattler_etcd.errors import DecodeError, EncodeError

__all__ = ["redact"]

Leaf = str | bytes
Fn = Callable[[Leaf], Leaf]

#: (message name, JSON name) -> the chain of fields reaching it (inline structs first).
_lookup_cache: dict[tuple[str, str], tuple[Field, ...] | None] = {}


def _lookup(message: str, json_name: str) -> tuple[Field, ...] | None:
    key = (message, json_name)
    try:
        return _lookup_cache[key]
    except KeyError:
        pass
    found: tuple[Field, ...] | None = None
    for f in SCHEMA.messages[message].fields:
        if f.inline:
            sub = _lookup(f.type, json_name)
            if sub is not None:
                found = (f, *sub)
                break
        elif f.json_name == json_name:
            found = (f,)
            break
    _lookup_cache[key] = found
    return found


def redact(
    value: bytes,
    paths: Sequence[tuple[str, ...]],
    fn: Fn,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
) -> tuple[bytes, int]:
    """Apply ``fn`` to every leaf string/bytes that ``paths`` reach.

    Returns (new bytes, number of leaves changed); ``value`` itself when
    nothing changed. Protobuf values are edited as parsed messages (no dict is
    built) and re-serialized as the APIServer would; JSON values are decoded
    and re-encoded compactly.
    """
    _check(value, max_size)
    if not paths:
        return value, 0
    if is_json(value):
        return _redact_json(value, paths, fn)
    env = _envelope(value)
    api_version, kind = env.typeMeta.apiVersion, env.typeMeta.kind
    name = _message_for(api_version, kind)
    msg = _parse_typed(name, env.raw, f"{api_version} {kind}")
    changed = 0
    for path in paths:
        changed += _walk_message(msg, name, path, 0, fn)
    if not changed:
        return value, 0
    return wrap(api_version, kind, msg.SerializeToString(deterministic=True)), changed


def _apply(old: Leaf, fn: Fn, want_bytes: bool) -> tuple[Leaf, bool]:
    new = fn(old)
    if want_bytes and isinstance(new, str):
        new = new.encode("utf-8")
    elif not want_bytes and isinstance(new, (bytes, bytearray)):
        new = bytes(new).decode("utf-8", "replace")
    if not isinstance(new, (str, bytes)):
        raise EncodeError(f"redact: fn returned {type(new).__name__}, not str or bytes")
    return new, new != old


def _walk_message(msg: Any, name: str, path: tuple[str, ...], i: int, fn: Fn) -> int:
    if i >= len(path):
        return 0
    chain = _lookup(name, path[i])
    if chain is None:
        return 0
    for f in chain[:-1]:  # inline structs: only through present ones
        if not msg.HasField(f.proto_name):
            return 0
        msg = getattr(msg, f.proto_name)
    return _walk_field(msg, chain[-1], path, i + 1, fn)


def _walk_field(msg: Any, f: Field, path: tuple[str, ...], i: int, fn: Fn) -> int:
    pname = f.proto_name
    last = i >= len(path)
    if f.label == "map":
        m = getattr(msg, pname)
        if not m:
            return 0
        if last:
            keys = list(m.keys())
        elif path[i] == "*":
            keys = list(m.keys())
            i += 1
        else:
            keys = [path[i]] if path[i] in m else []
            i += 1
        n = 0
        for k in keys:
            if f.is_message:
                n += _walk_value(m[k], f.type, path, i, fn)
            elif i >= len(path) and f.type in ("string", "bytes"):
                new, diff = _apply(m[k], fn, f.type == "bytes")
                if diff:
                    m[k] = new
                    n += 1
        return n
    if f.label == "rep":
        seq = getattr(msg, pname)
        if not seq:
            return 0
        if last or path[i] == "*":
            indices = range(len(seq))
            i = i if last else i + 1
        elif path[i].isdigit():
            indices = range(int(path[i]), int(path[i]) + 1) if int(path[i]) < len(seq) else range(0)
            i += 1
        else:
            return 0
        n = 0
        for j in indices:
            if f.is_message:
                n += _walk_value(seq[j], f.type, path, i, fn)
            elif i >= len(path) and f.type in ("string", "bytes"):
                new, diff = _apply(seq[j], fn, f.type == "bytes")
                if diff:
                    seq[j] = new
                    n += 1
        return n
    if not msg.HasField(pname):
        return 0
    if f.is_message:
        return _walk_value(getattr(msg, pname), f.type, path, i, fn)
    if last and f.type in ("string", "bytes"):
        new, diff = _apply(getattr(msg, pname), fn, f.type == "bytes")
        if diff:
            setattr(msg, pname, new)
            return 1
    return 0


def _walk_value(msg: Any, name: str, path: tuple[str, ...], i: int, fn: Fn) -> int:
    """A message value reached by the path: a struct to walk on, or a special leaf."""
    special = SCHEMA.messages[name].special
    if special is None:
        return _walk_message(msg, name, path, i, fn)
    if i < len(path) and special != "stringlist":
        return 0
    if special == "quantity":
        attr, as_bytes = "string", False
    elif special == "intorstring":
        if msg.type != 1:
            return 0
        attr, as_bytes = "strVal", False
    elif special == "rawextension":
        attr, as_bytes = "raw", True
    elif special == "fieldsv1":
        attr, as_bytes = "Raw", True
    elif special == "stringlist":
        seq = msg.items
        if i < len(path) and path[i] != "*":
            return 0
        n = 0
        for j in range(len(seq)):
            new, diff = _apply(seq[j], fn, False)
            if diff:
                seq[j] = new
                n += 1
        return n
    else:
        return 0  # times and durations are not text in protobuf
    if not msg.HasField(attr):
        return 0
    new, diff = _apply(getattr(msg, attr), fn, as_bytes)
    if diff:
        setattr(msg, attr, new)
        return 1
    return 0


def _redact_json(value: bytes, paths: Sequence[tuple[str, ...]], fn: Fn) -> tuple[bytes, int]:
    try:
        obj = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"invalid JSON value ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise DecodeError("a JSON value that is not an object")
    changed = 0
    for path in paths:
        changed += _walk_json(obj, path, 0, fn)
    if not changed:
        return value, 0
    out = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if bytes(value[-1:]) == b"\n":
        out += b"\n"
    return out, changed


def _walk_json(node: Any, path: tuple[str, ...], i: int, fn: Fn) -> int:
    if i >= len(path):
        if isinstance(node, str):
            return -1  # the caller replaces it
        if isinstance(node, (list, dict)):
            n = 0
            items = enumerate(node) if isinstance(node, list) else list(node.items())
            for k, v in items:
                if isinstance(v, str):
                    new, diff = _apply(v, fn, False)
                    if diff:
                        node[k] = new
                        n += 1
            return n
        return 0
    elem = path[i]
    if isinstance(node, dict):
        keys = list(node) if elem == "*" else ([elem] if elem in node else [])
    elif isinstance(node, list):
        if elem == "*":
            keys = list(range(len(node)))
        elif elem.isdigit() and int(elem) < len(node):
            keys = [int(elem)]
        else:
            return 0
    else:
        return 0
    n = 0
    for k in keys:
        child = node[k]
        r = _walk_json(child, path, i + 1, fn)
        if r == -1:
            new, diff = _apply(child, fn, False)
            if diff:
                node[k] = new
                n += 1
        else:
            n += r
    return n
