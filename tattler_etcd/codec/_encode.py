"""JSON-shaped dict -> protobuf message, written the way the APIServer writes it.

The Go encoder (gogo-protobuf generated code) writes every non-pointer field,
zero or not, in field-number order; a pointer only when it is set; a
``[]byte`` only when it is not nil; map entries sorted by key. upb writes
fields in number order too, and ``deterministic=True`` sorts map keys, so
setting exactly the fields Go would write gives the same bytes.
"""

from __future__ import annotations

import binascii
import json
import threading
from collections.abc import Callable
from typing import Any

from tattler_etcd.codec import _gotime
from tattler_etcd.codec._convert import UNKNOWN_KEY
from tattler_etcd.codec._schema import SCHEMA, Field, Message

__all__ = ["EncodeFailure", "fill_message"]

#: Keys that never name a field: the TypeMeta of the object (and of list items).
_TYPE_META = frozenset(("apiVersion", "kind"))


class EncodeFailure(ValueError):
    """A value that does not fit the schema; ``path`` says where (JSON names)."""

    def __init__(self, path: list[str], reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(reason)


class _Encoder:
    __slots__ = ("fn", "known", "message")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.known: frozenset[str] = frozenset()
        self.fn: Callable[[Any, dict[str, Any]], None] = _not_ready


def _not_ready(msg: Any, d: dict[str, Any]) -> None:  # pragma: no cover - replaced during preparation
    raise RuntimeError("encoder used before it was prepared")


_encoders: dict[str, _Encoder] = {}


_lock = threading.RLock()
_preparing: dict[str, _Encoder] = {}


def _encoder(name: str) -> _Encoder:
    enc = _encoders.get(name)
    if enc is not None:
        return enc
    with _lock:  # prepared once, visible to other threads only when ready
        enc = _encoders.get(name) or _preparing.get(name)
        if enc is not None:
            return enc
        enc = _Encoder(SCHEMA.messages[name])
        _preparing[name] = enc
        try:
            _prepare(enc)
        finally:
            del _preparing[name]
        _encoders[name] = enc
        return enc


def _known_keys(message: Message) -> set[str]:
    keys: set[str] = set()
    for f in message.fields:
        if f.inline:
            keys |= _known_keys(SCHEMA.messages[f.type])
        else:
            keys.add(f.json_name)
    return keys


def fill_message(msg: Any, name: str, d: Any) -> None:
    """Set on ``msg`` (an instance of message ``name``) the fields Go would write for ``d``."""
    if not isinstance(d, dict):
        raise EncodeFailure([], f"expected an object, got {type(d).__name__}")
    enc = _encoders.get(name) or _encoder(name)
    if not enc.known.issuperset(d):
        extra = sorted(k for k in d if k not in enc.known)
        raise EncodeFailure([extra[0]], f"no such field in {name.rsplit('.', 1)[1]}")
    enc.fn(msg, d)
    raw = d.get(UNKNOWN_KEY)
    if raw is not None:
        try:
            msg.MergeFromString(binascii.a2b_base64(raw))
        except Exception as exc:
            raise EncodeFailure([UNKNOWN_KEY], f"not base64 wire bytes: {exc}") from exc


def _prepare(enc: _Encoder) -> None:
    """Generate this message's encoder: one block of statements per field.

    Every field of the message is visited (Go writes non-pointer fields even
    when zero); the common type checks are inline, the rest call prepared
    converters. One try/except per message turns failures into an
    :class:`EncodeFailure` naming the JSON key.
    """
    # apiVersion/kind (TypeMeta, never a field) and "$unknown" are accepted everywhere
    enc.known = frozenset(_known_keys(enc.message)) | _TYPE_META | {UNKNOWN_KEY}
    env: dict[str, Any] = {"_EF": EncodeFailure, "_ERRS": (TypeError, ValueError, OverflowError, binascii.Error)}

    def ref(obj: Any) -> str:
        name = f"_r{len(env)}"
        env[name] = obj
        return name

    body: list[str] = []
    for f in enc.message.fields:
        body.extend(_field_code(f, ref))
    inner = "\n".join("        " + line for line in body) or "        pass"
    src = (
        "def enc(m, d):\n"
        "    k = None\n"
        "    try:\n"
        f"{inner}\n"
        "    except _EF as exc:\n"
        "        if k is not None and (not exc.path or exc.path[0] != k):\n"
        "            exc.path.insert(0, k)\n"
        "        raise\n"
        "    except _ERRS as exc:\n"
        "        raise _EF([k] if k is not None else [], str(exc)[:200]) from exc\n"
    )
    code = compile(src, f"<codec encoder {enc.message.name}>", "exec")
    exec(code, env)  # noqa: S102 - our own generated source, from the schema only
    enc.fn = env["enc"]


_KEYWORDS = frozenset(__import__("keyword").kwlist)
_PY_TYPE = {"string": "str", "bool": "bool", "int32": "int", "int64": "int", "uint32": "int", "uint64": "int"}


def _field_code(f: Field, ref: Callable[[Any], str]) -> list[str]:
    p = f.proto_name
    ok_name = p.isidentifier() and p not in _KEYWORDS
    get = f"m.{p}" if ok_name else f"getattr(m, {p!r})"

    def put(expr: str) -> str:
        return f"m.{p} = {expr}" if ok_name else f"setattr(m, {p!r}, {expr})"

    key = f.json_name
    k = repr(key)
    if f.inline:
        sub = ref(_encoder(f.type))
        out = ["k = None"]
        if f.pointer or f.removed:  # a nil embedded pointer is not written
            out += [f"if {ref(frozenset(_known_keys(SCHEMA.messages[f.type])))} & d.keys():",
                    f"    x = {get}", f"    {sub}.fn(x, d)", "    x.SetInParent()"]
        else:
            out += [f"x = {get}", f"{sub}.fn(x, d)", "x.SetInParent()"]
        return out
    head = [f"k = {k}", f"v = d.get({k})"]
    if f.label == "map":
        check = ["if v is not None:", "    if v.__class__ is not dict:",
                 f"        raise _EF([{k}], 'expected an object')", f"    t = {get}"]
        if f.is_message:
            setter = ref(_message_setter(f.type))
            return head + check + [
                "    for kk, x in v.items():", "        try:", f"            {setter}(t[kk], x)",
                "        except _EF as exc:", "            exc.path.insert(0, kk)", "            raise"]
        conv = ref(_scalar(f))
        return head + check + ["    for kk, x in v.items():", f"        t[kk] = {conv}(x)"]
    if f.label == "rep":
        check = ["if v is not None:", "    if v.__class__ is not list:",
                 f"        raise _EF([{k}], 'expected a list')"]
        if f.is_message:
            setter = ref(_message_setter(f.type))
            return head + check + [
                f"    t = {get}", "    for i, x in enumerate(v):", "        try:",
                f"            {setter}(t.add(), x)", "        except _EF as exc:",
                "            exc.path.insert(0, str(i))", "            raise"]
        conv = ref(_scalar(f))
        return head + check + [f"    {get}.extend(map({conv}, v))"]
    if f.is_message:
        setter = ref(_message_setter(f.type))
        special = SCHEMA.messages[f.type].special
        if f.pointer or f.removed or special == "stringlist":  # nil pointer / nil slice: not written
            return head + ["if v is not None:", f"    {setter}({get}, v)"]
        return head + [f"{setter}({get}, v)"]
    conv = ref(_scalar(f))
    if f.type == "bytes":
        return head + ["if v is not None:", f"    {put(f'{conv}(v)')}"]  # nil []byte is not written
    pytype = _PY_TYPE.get(f.type)
    value = f"v if v.__class__ is {pytype} else {conv}(v)" if pytype else f"{conv}(v)"
    if f.pointer or f.removed:
        return head + ["if v is not None:", f"    {put(value)}"]
    zero = {"string": "''", "bool": "False"}.get(f.type, "0")
    return head + ["if v is None:", f"    {put(zero)}", "else:", f"    {put(value)}"]



def _scalar(f: Field) -> Callable[[Any], Any]:
    t = f.type
    if t == "string":
        def to_str(v: Any) -> Any:
            if not isinstance(v, str):
                raise TypeError(f"expected a string, got {type(v).__name__}")
            return v
        return to_str
    if t == "bool":
        def to_bool(v: Any) -> Any:
            if not isinstance(v, bool):
                raise TypeError(f"expected true/false, got {type(v).__name__}")
            return v
        return to_bool
    if t == "bytes":
        def to_bytes(v: Any) -> Any:
            if not isinstance(v, str):
                raise TypeError(f"expected base64 text, got {type(v).__name__}")
            return binascii.a2b_base64(v.encode("ascii"))
        return to_bytes

    def to_int(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
            raise TypeError(f"expected an integer, got {v!r}"[:80])
        return int(v)
    return to_int


def _message_setter(name: str) -> Callable[[Any, Any], None]:
    """How to write a JSON value into a (sub-)message of type ``name``; the sub-message ends up present."""
    special = SCHEMA.messages[name].special
    if special is None:
        def put_msg(sub: Any, v: Any) -> None:
            fill_message(sub, name, {} if v is None else v)
            sub.SetInParent()
        return put_msg
    if special == "time":
        def put_time(sub: Any, v: Any) -> None:
            sub.SetInParent()
            if v is None:
                return
            seconds, _ = _gotime.parse_time(v)
            sub.seconds = seconds
            sub.nanos = 0  # metav1.Time keeps whole seconds only
        return put_time
    if special == "microtime":
        def put_micro(sub: Any, v: Any) -> None:
            sub.SetInParent()
            if v is None:
                return
            seconds, nanos = _gotime.parse_time(v)
            sub.seconds = seconds
            sub.nanos = nanos // 1000 * 1000
        return put_micro
    if special == "duration":
        def put_duration(sub: Any, v: Any) -> None:
            sub.duration = 0 if v is None else _gotime.parse_duration(v)
        return put_duration
    if special == "quantity":
        def put_quantity(sub: Any, v: Any) -> None:
            if v is None:
                v = "0"
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise TypeError(f"a quantity must be a string or a number, got {type(v).__name__}")
            sub.string = v if isinstance(v, str) else json.dumps(v)
        return put_quantity
    if special == "intorstring":
        def put_int_or_string(sub: Any, v: Any) -> None:
            if v is None:
                v = 0
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise TypeError(f"expected an integer or a string, got {type(v).__name__}")
            if isinstance(v, int):
                sub.type, sub.intVal, sub.strVal = 0, v, ""
            else:
                sub.type, sub.intVal, sub.strVal = 1, 0, v
        return put_int_or_string
    if special in ("rawextension", "fieldsv1"):
        pname = "raw" if special == "rawextension" else "Raw"

        def put_raw(sub: Any, v: Any) -> None:
            sub.SetInParent()
            if v is None:
                return
            setattr(sub, pname, json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        return put_raw
    if special == "stringlist":
        def put_strings(sub: Any, v: Any) -> None:
            sub.SetInParent()
            if v is None:
                return
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise TypeError("expected a list of strings")
            sub.items.extend(v)
        return put_strings
    raise RuntimeError(f"unknown special type {special!r}")
