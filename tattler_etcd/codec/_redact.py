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
import keyword
from collections.abc import Callable, Sequence
from typing import Any

from tattler_etcd.codec import _fast
from tattler_etcd.codec._api import (
    DEFAULT_MAX_SIZE,
    Parsed,
    _check,
    _message_for,
    _parse_typed,
    _split_envelope,
    is_json,
    wrap,
)
from tattler_etcd.codec._schema import SCHEMA, Field
from tattler_etcd.errors import DecodeError, EncodeError

__all__ = ["Replace", "discard_unknown", "drop_unknown", "redact", "redact_parsed", "size_changed"]

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
    original = value
    value = _check(value, max_size)
    if not paths:
        return original, 0
    if is_json(value):
        return _redact_json(value, paths, fn)
    api_version, kind, raw = _split_envelope(value)
    name = _message_for(api_version, kind)
    walker = _walker(name, paths)
    if walker is None:
        return original, 0
    msg = _parse_typed(name, raw, f"{api_version} {kind}")
    changed = walker(msg, fn)
    if not changed:
        return original, 0
    return wrap(api_version, kind, msg.SerializeToString(deterministic=True)), changed


def redact_parsed(parsed: Parsed, paths: Sequence[tuple[str, ...]], fn: Fn) -> int:
    """:func:`redact` on a :class:`~tattler_etcd.codec.Parsed`, in place: the number of leaves changed.

    Nothing is serialized; :func:`~tattler_etcd.codec.to_bytes` does that
    when the bytes are wanted. Paths that reach nothing in the kind cost no
    parse of the object. Once a leaf changed, the parsed object keeps no copy
    of the original bytes.
    """
    if not isinstance(parsed, Parsed):
        raise TypeError(f"redact_parsed: expected a Parsed, got {type(parsed).__name__}")
    if not paths:
        return 0
    raw = parsed._raw
    if parsed._message is None and raw is not None:
        # Not parsed yet: the C rewrite of the bytes, when it can take these paths.
        done = _fast.redact_raw(parsed._name, paths, raw, fn, (fn.text, fn.data) if type(fn) is Replace else None)
        if done is not None:
            new_raw, changed, error = done
            if new_raw is not None:
                parsed._edited_raw(new_raw)
            if error is not None:
                raise error
            return changed
    walker = _walker(parsed._name, paths, (fn.text, fn.data) if type(fn) is Replace else None)
    if walker is None:
        return 0
    msg = parsed._message
    if msg is None:
        msg = parsed._typed()
    try:
        changed = walker(msg, fn)
    except BaseException:
        # fn or a coercion failed part-way: some leaves may already be edited,
        # so the original bytes no longer describe the message.
        parsed._changed()
        raise
    if changed:
        parsed._changed()
    return changed


def drop_unknown(parsed: Parsed) -> bool:
    """Remove every field the schema does not know, at any depth, from ``parsed``; True when there was one.

    Why: a field we cannot read (from a newer server, or written by hand) may
    hold tomorrow's secret, and no path can reach it. upb keeps such fields
    and writes them back; this drops them (``DiscardUnknownFields``, in C) and
    tells whether anything went by comparing sizes, so an object without any
    keeps its very bytes. Call it before any leaf is changed: then the size to
    compare with is the stored one, and no extra size computation is needed.
    """
    if not isinstance(parsed, Parsed):
        raise TypeError(f"drop_unknown: expected a Parsed, got {type(parsed).__name__}")
    size = discard_unknown(parsed)  # None: the C scan of the bytes found none (no parse, no walk)
    return size is not None and size_changed(parsed, size)


class Replace:
    """A leaf function that replaces every non-empty leaf by a constant, inlined in the walkers.

    Why: calling ``fn`` costs a Python call per leaf; the safety stage only
    ever replaces (``"REDACTED"``), so with a Replace the generated walker
    writes the constant itself. It adds up in :attr:`delta` how many bytes
    the replacements added to the serialized form (exact for values under 128
    UTF-8 bytes; a caller comparing lengths treats a mismatch as "cannot tell").
    Called like any ``fn`` where a path is not inlined.
    """

    __slots__ = ("data", "delta", "text")

    def __init__(self, text: str, data: bytes) -> None:
        self.text = text
        self.data = data
        self.delta = 0

    def __call__(self, v: Leaf) -> Leaf:
        if not v:
            return v
        new: Leaf = self.data if isinstance(v, (bytes, bytearray)) else self.text
        self.delta += len(new) - len(v)
        return new


def discard_unknown(parsed: Parsed) -> int | None:
    """Remove every unknown field from ``parsed`` in C, without telling whether there was one.

    Returns None when the C scan of the stored bytes (``_fast.has_unknown``,
    ~1-2 us) says there is none: nothing is parsed or walked. Else the size of
    the typed bytes as stored (call it before any leaf changed), after
    ``DiscardUnknownFields``. Why two steps: telling costs a second walk
    (``ByteSize``); a caller that serializes anyway can tell from the length
    it gets (:func:`drop_unknown` does both). Until :func:`size_changed` says
    so, the Parsed still gives its original bytes back (which hold the fields).
    """
    if not isinstance(parsed, Parsed):
        raise TypeError(f"discard_unknown: expected a Parsed, got {type(parsed).__name__}")
    raw = parsed._raw
    msg = parsed._message
    if msg is None:
        if raw is not None and _fast.has_unknown(parsed._name, raw) is False:
            return None
        msg = parsed._typed()
    size = len(raw) if raw is not None else msg.ByteSize()
    msg.DiscardUnknownFields()
    return size


def size_changed(parsed: Parsed, size: int) -> bool:
    """After :func:`discard_unknown`: True (and the Parsed marked changed) when its size is no longer ``size``."""
    if parsed._typed().ByteSize() == size:
        return False
    parsed._changed()
    return True


def _coerce(new: Any, want_bytes: bool) -> Leaf:
    """What ``fn`` returned, as the field's type (str for strings, bytes for bytes)."""
    if want_bytes and isinstance(new, str):
        new = new.encode("utf-8")
    elif not want_bytes and isinstance(new, (bytes, bytearray)):
        new = bytes(new).decode("utf-8", "replace")
    if not isinstance(new, (str, bytes)):
        raise EncodeError(f"redact: fn returned {type(new).__name__}, not str or bytes")
    return new


def _apply(old: Leaf, fn: Fn, want_bytes: bool) -> tuple[Leaf, bool]:
    new = _coerce(fn(old), want_bytes)
    return new, new != old


Walker = Callable[[Any, Fn], int]
_END = object()  # marks where a path ends in the trie
Node = dict[Any, Any]

#: (message name, paths) -> the compiled walker (None: no path reaches anything).
_compiled: dict[tuple[str, tuple[tuple[str, ...], ...], Any], Walker | None] = {}


def _trie(paths: Sequence[tuple[str, ...]]) -> Node:
    root: Node = {}
    for path in paths:
        node = root
        for elem in path:
            node = node.setdefault(elem, {})
        node[_END] = True
    return root


#: (message name, id(paths)) -> (paths, walker), for callers that pass the same
#: tuple every time (the safety stage): found without hashing every path.
#: Holding ``paths`` keeps its id from being reused; only deeply immutable
#: tuples go in, and the table is bounded since callers may make new ones.
_by_identity: dict[tuple[str, int, Any], tuple[Sequence[tuple[str, ...]], Walker | None]] = {}


def _walker(name: str, paths: Sequence[tuple[str, ...]], inline: tuple[str, bytes] | None = None) -> Walker | None:
    """The paths compiled for one message type (built once per type, paths and inlined constants)."""
    hit = _by_identity.get((name, id(paths), inline))
    if hit is not None and hit[0] is paths:
        return hit[1]
    key = (name, tuple(tuple(p) for p in paths), inline)
    try:
        walker = _compiled[key]
    except KeyError:
        walker = _generated_walker(name, _trie(paths), inline)
        _compiled[key] = walker
    if (type(paths) is tuple and len(_by_identity) < 4096
            and all(type(p) is tuple and all(type(e) is str for e in p) for p in paths)):
        _by_identity[(name, id(paths), inline)] = (paths, walker)
    return walker


# -- generated walkers ---------------------------------------------------------
#
# Why: the closures below cost a Python call per message and per leaf on the
# way down (a Pod's env values took ~10 us, more than upb's parse). For the
# shapes every path of the safety stage has (singular messages, every element
# of a list of messages, a string or bytes leaf) one function is generated
# per (type, paths), with the loops nested inline; any other step (maps,
# chosen keys or indices, lists of strings, the special types) calls the
# closure for that field, so both share one definition of what a path means.
#
# Reading a singular message field that is absent gives upb's empty default
# without marking it present, so the generated code reads through without
# asking HasField: an absent message has no leaves, and leaves are only ever
# set when present, so nothing absent is ever made present.


class _Gen:
    def __init__(self, inline: tuple[str, bytes] | None = None) -> None:
        self.consts: dict[str, Any] = {"_coerce": _coerce}
        self._n = 0
        #: (text, bytes) written inline at string/bytes leaves (a Replace), or None: call fn.
        self.inline = inline

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def const(self, value: Any) -> str:
        name = self.name("w")
        self.consts[name] = value
        return name


def _attr(var: str, pname: str) -> str:
    if pname.isidentifier() and not keyword.iskeyword(pname):
        return f"{var}.{pname}"
    return f"getattr({var}, {pname!r})"


def _generated_walker(name: str, node: Node, inline: tuple[str, bytes] | None = None) -> Walker | None:
    gen = _Gen(inline)
    body = _gen_message(gen, name, node, "m", "    ")
    if not body:
        return None
    src = "\n".join(["def walk(m, fn):", "    n = 0", *body, "    return n", ""])
    ns = dict(gen.consts)
    exec(compile(src, f"<redact walker {name}>", "exec"), ns)  # noqa: S102 - our own generated code
    walker: Walker = ns["walk"]
    return walker


def _gen_message(gen: _Gen, name: str, node: Node, var: str, ind: str) -> list[str]:
    lines: list[str] = []
    for elem, child in node.items():
        if elem is _END:
            continue
        chain = _lookup(name, elem)
        if chain is None:
            continue
        f = chain[-1]
        if _field_walker(f, child) is None:
            continue  # nothing this path reaches can exist
        body: list[str] = []
        v = var
        for inline in chain[:-1]:  # inline structs: read through (see above)
            nv = gen.name("s")
            body.append(f"{ind}{nv} = {_attr(v, inline.proto_name)}")
            v = nv
        field_lines = _gen_field(gen, f, child, v, ind)
        if field_lines:
            lines += body + field_lines
    return lines


def _gen_field(gen: _Gen, f: Field, node: Node, var: str, ind: str) -> list[str]:
    plain_message = f.is_message and SCHEMA.messages[f.type].special is None
    if f.label == "opt" and plain_message:
        sv = gen.name("s")
        sub = _gen_message(gen, f.type, node, sv, ind)
        return [f"{ind}{sv} = {_attr(var, f.proto_name)}", *sub] if sub else []
    if f.label == "rep" and plain_message and set(node) <= {"*", _END}:
        if "*" not in node:
            return []
        xv, lv = gen.name("x"), gen.name("l")
        sub = _gen_message(gen, f.type, node["*"], xv, ind + "        ")
        if not sub:
            return []
        # The test first: a upb iterator costs more than the emptiness check,
        # and most lists on the way are empty (initContainers, a container's env).
        return [f"{ind}{lv} = {_attr(var, f.proto_name)}", f"{ind}if {lv}:", f"{ind}    for {xv} in {lv}:", *sub]
    if f.label == "opt" and f.type in ("string", "bytes") and _END in node:
        want = f.type
        ov, nv = gen.name("o"), gen.name("v")
        get = _attr(var, f.proto_name)
        set_ = (f"{var}.{f.proto_name} = {nv}" if get.startswith(f"{var}.")
                else f"setattr({var}, {f.proto_name!r}, {nv})")
        check = "str" if want == "string" else "bytes"
        if gen.inline is not None:
            new = gen.inline[0] if want == "string" else gen.inline[1]
            size = len(new.encode("utf-8")) if isinstance(new, str) else len(new)
            # Empty values stay empty, so no presence check is needed.
            return [
                f"{ind}{ov} = {get}",
                f"{ind}if {ov} and {ov} != {new!r}:",
                f"{ind}    {set_.replace(nv, repr(new))}",
                f"{ind}    n += 1",
                f"{ind}    fn.delta += {size} - len({ov})",
            ]
        return [
            f"{ind}{ov} = {get}",
            # A non-empty value is present; an empty one may be present (set to "").
            f"{ind}if {ov} or {var}.HasField({f.proto_name!r}):",
            f"{ind}    {nv} = fn({ov})",
            f"{ind}    if type({nv}) is not {check}:",
            f"{ind}        {nv} = _coerce({nv}, {want == 'bytes'})",
            f"{ind}    if {nv} != {ov}:",
            f"{ind}        {set_}",
            f"{ind}        n += 1",
        ]
    if (f.label == "map" and f.type in ("string", "bytes") and _END not in node
            and all(k is not _END and _END in c for k, c in node.items())):
        # A map of strings, at chosen keys or every key ("*"): metadata.annotations, Secret.data.
        return _gen_map_leaves(gen, f, node, var, ind)
    step = _field_walker(f, node)
    if step is None:
        return []
    return [f"{ind}n += {gen.const(step)}({var}, fn)"]


def _gen_map_leaves(gen: _Gen, f: Field, node: Node, var: str, ind: str) -> list[str]:
    lv, kv, ov, nv = gen.name("l"), gen.name("k"), gen.name("o"), gen.name("v")
    check, want_bytes = ("bytes", True) if f.type == "bytes" else ("str", False)

    def apply(key: str, ind2: str) -> list[str]:
        return [
            f"{ind2}{nv} = fn({ov})",
            f"{ind2}if type({nv}) is not {check}:",
            f"{ind2}    {nv} = _coerce({nv}, {want_bytes})",
            f"{ind2}if {nv} != {ov}:",
            f"{ind2}    {lv}[{key}] = {nv}",
            f"{ind2}    n += 1",
        ]

    lines = [f"{ind}{lv} = {_attr(var, f.proto_name)}", f"{ind}if {lv}:"]
    if "*" in node:
        # A list of the keys first: setting a value while iterating a map is not allowed.
        lines += [f"{ind}    for {kv} in list({lv}):", f"{ind}        {ov} = {lv}[{kv}]",
                  *apply(kv, ind + "        ")]
    for key in node:
        if key == "*":
            continue
        lines += [f"{ind}    {ov} = {lv}.get({key!r})", f"{ind}    if {ov} is not None:",
                  *apply(repr(key), ind + "        ")]
    return lines


def _message_walker(name: str, node: Node) -> Walker | None:
    steps: list[Walker] = []
    for elem, child in node.items():
        if elem is _END:
            continue
        chain = _lookup(name, elem)
        if chain is None:
            continue
        step = _field_walker(chain[-1], child)
        if step is None:
            continue
        for f in reversed(chain[:-1]):  # inline structs: only through present ones
            step = _through(f.proto_name, step)
        steps.append(step)
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]

    def walk(msg: Any, fn: Fn) -> int:
        n = 0
        for step in steps:
            n += step(msg, fn)
        return n
    return walk


def _through(pname: str, step: Walker) -> Walker:
    def through(msg: Any, fn: Fn) -> int:
        if not msg.HasField(pname):
            return 0
        return step(getattr(msg, pname), fn)
    return through


def _leaf_setter(want_bytes: bool) -> Callable[[Any, Any, Fn], int]:
    """Apply fn to container[k] (a repeated field or a map)."""
    def set_leaf(container: Any, k: Any, fn: Fn) -> int:
        new, diff = _apply(container[k], fn, want_bytes)
        if diff:
            container[k] = new
            return 1
        return 0
    return set_leaf


def _field_walker(f: Field, node: Node) -> Walker | None:
    pname = f.proto_name
    leaf_type = f.type in ("string", "bytes")
    want_bytes = f.type == "bytes"
    if f.label in ("map", "rep"):
        is_map = f.label == "map"
        # what applies to every element, and to chosen keys/indices
        every: list[Node] = [node] if _END in node else []
        if "*" in node:
            every.append(node["*"])
        chosen = {k: v for k, v in node.items() if k is not _END and k != "*"}
        if not is_map:
            chosen = {int(k): v for k, v in chosen.items() if k.isdigit()}
        if f.is_message:
            def sub(n: Node) -> Walker | None:
                # the END of the container's own node is not a leaf inside its elements
                return _value_walker(f.type, n if n is not node else {k: v for k, v in n.items() if k is _END})
            every_w = [w for w in (sub(n) for n in every) if w is not None]
            chosen_w = {k: w for k, w in ((k, sub(n)) for k, n in chosen.items()) if w is not None}
            if not every_w and not chosen_w:
                return None

            def walk_msgs(msg: Any, fn: Fn) -> int:
                container = getattr(msg, pname)
                if not container:
                    return 0
                n = 0
                if every_w:
                    for x in (container.values() if is_map else container):
                        for w in every_w:
                            n += w(x, fn)
                for k, w in chosen_w.items():
                    if (k in container) if is_map else (k < len(container)):
                        n += w(container[k], fn)
                return n
            return walk_msgs
        if not leaf_type:
            return None
        all_leaves = any(_END in n for n in every)
        chosen_leaves = [k for k, n in chosen.items() if _END in n]
        if not all_leaves and not chosen_leaves:
            return None
        set_leaf = _leaf_setter(want_bytes)

        def walk_leaves(msg: Any, fn: Fn) -> int:
            container = getattr(msg, pname)
            if not container:
                return 0
            n = 0
            if all_leaves:
                for k in (list(container) if is_map else range(len(container))):
                    n += set_leaf(container, k, fn)
            for k in chosen_leaves:
                if (k in container) if is_map else (k < len(container)):
                    n += set_leaf(container, k, fn)
            return n
        return walk_leaves
    if f.is_message:
        sub_w = _value_walker(f.type, node)
        if sub_w is None:
            return None

        def walk_msg(msg: Any, fn: Fn) -> int:
            if not msg.HasField(pname):
                return 0
            return sub_w(getattr(msg, pname), fn)
        return walk_msg
    if not leaf_type or _END not in node:
        return None

    def walk_scalar(msg: Any, fn: Fn) -> int:
        return _apply_to_attr(msg, pname, fn, want_bytes)
    return walk_scalar


def _apply_to_attr(msg: Any, attr: str, fn: Fn, want_bytes: bool) -> int:
    """Apply fn to a present scalar field; 1 when it changed."""
    if not msg.HasField(attr):
        return 0
    new, diff = _apply(getattr(msg, attr), fn, want_bytes)
    if diff:
        setattr(msg, attr, new)
        return 1
    return 0


def _value_walker(name: str, node: Node) -> Walker | None:
    """A message value reached by a path: a struct to walk on, or a special leaf."""
    special = SCHEMA.messages[name].special
    if special is None:
        return _message_walker(name, node)
    if special == "stringlist":
        if _END not in node and _END not in node.get("*", {}):
            return None
        set_leaf = _leaf_setter(False)

        def walk_items(msg: Any, fn: Fn) -> int:
            seq = msg.items
            n = 0
            for j in range(len(seq)):
                n += set_leaf(seq, j, fn)
            return n
        return walk_items
    if _END not in node:
        return None
    if special == "quantity":
        attr, as_bytes = "string", False
    elif special == "intorstring":
        attr, as_bytes = "strVal", False
    elif special == "rawextension":
        attr, as_bytes = "raw", True
    elif special == "fieldsv1":
        attr, as_bytes = "Raw", True
    else:
        return None  # times and durations are not text in protobuf

    def walk_special(msg: Any, fn: Fn) -> int:
        if special == "intorstring" and msg.type != 1:
            return 0
        return _apply_to_attr(msg, attr, fn, as_bytes)
    return walk_special


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
