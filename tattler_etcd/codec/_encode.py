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
    __slots__ = ("known", "message", "steps")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.known: frozenset[str] = frozenset()
        self.steps: list[Callable[[Any, dict[str, Any]], None]] = []


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
    enc = _encoder(name)
    if not enc.known.issuperset(d):
        extra = sorted(k for k in d if k not in enc.known and k not in _TYPE_META and k != UNKNOWN_KEY)
        if extra:
            raise EncodeFailure([extra[0]], f"no such field in {name.rsplit('.', 1)[1]}")
    for step in enc.steps:
        step(msg, d)
    raw = d.get(UNKNOWN_KEY)
    if raw is not None:
        try:
            msg.MergeFromString(binascii.a2b_base64(raw))
        except Exception as exc:
            raise EncodeFailure([UNKNOWN_KEY], f"not base64 wire bytes: {exc}") from exc


def _prepare(enc: _Encoder) -> None:
    enc.known = frozenset(_known_keys(enc.message))
    for f in enc.message.fields:
        enc.steps.append(_step(f))


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


def _step(f: Field) -> Callable[[Any, dict[str, Any]], None]:
    pname = f.proto_name
    key = f.json_name
    if f.inline:
        sub_name = f.type

        def inline(msg: Any, d: dict[str, Any]) -> None:
            sub = getattr(msg, pname)
            if (f.pointer or f.removed) and not (_known_keys(SCHEMA.messages[sub_name]) & d.keys()):
                return
            _fill_inline(sub, sub_name, d)
            sub.SetInParent()
        return inline

    special = SCHEMA.messages[f.type].special if f.is_message else None

    if f.label == "map":
        if f.is_message:
            put = _message_setter(f.type)

            def map_msg(msg: Any, d: dict[str, Any]) -> None:
                v = d.get(key)
                if v is None:
                    return
                if not isinstance(v, dict):
                    raise EncodeFailure([key], "expected an object")
                target = getattr(msg, pname)
                for k, x in v.items():
                    try:
                        put(target[k], x)
                    except EncodeFailure as exc:
                        exc.path.insert(0, k)
                        raise
            return _guard(key, map_msg)
        conv = _scalar(f)

        def map_scalar(msg: Any, d: dict[str, Any]) -> None:
            v = d.get(key)
            if v is None:
                return
            if not isinstance(v, dict):
                raise EncodeFailure([key], "expected an object")
            target = getattr(msg, pname)
            for k, x in v.items():
                target[k] = conv(x)
        return _guard(key, map_scalar)

    if f.label == "rep":
        if f.is_message:
            put = _message_setter(f.type)

            def rep_msg(msg: Any, d: dict[str, Any]) -> None:
                v = d.get(key)
                if v is None:
                    return
                if not isinstance(v, list):
                    raise EncodeFailure([key], "expected a list")
                target = getattr(msg, pname)
                for i, x in enumerate(v):
                    try:
                        put(target.add(), x)
                    except EncodeFailure as exc:
                        exc.path.insert(0, str(i))
                        raise
            return _guard(key, rep_msg)
        conv = _scalar(f)

        def rep_scalar(msg: Any, d: dict[str, Any]) -> None:
            v = d.get(key)
            if v is None:
                return
            if not isinstance(v, list):
                raise EncodeFailure([key], "expected a list")
            getattr(msg, pname).extend(conv(x) for x in v)
        return _guard(key, rep_scalar)

    if f.is_message:
        put = _message_setter(f.type)
        pointer = f.pointer or f.removed
        slice_like = special == "stringlist"

        def single_msg(msg: Any, d: dict[str, Any]) -> None:
            v = d.get(key)
            if v is None and (pointer or slice_like):
                return  # nil pointer / nil slice: not written
            put(getattr(msg, pname), v)
        return _guard(key, single_msg)

    conv = _scalar(f)
    if f.type == "bytes":
        def bytes_field(msg: Any, d: dict[str, Any]) -> None:
            v = d.get(key)
            if v is None:
                return  # nil []byte is not written
            setattr(msg, pname, conv(v))
        return _guard(key, bytes_field)
    zero = {"string": "", "bool": False}.get(f.type, 0)
    if f.pointer or f.removed:
        def pointer_scalar(msg: Any, d: dict[str, Any]) -> None:
            v = d.get(key)
            if v is not None:
                setattr(msg, pname, conv(v))
        return _guard(key, pointer_scalar)

    def scalar(msg: Any, d: dict[str, Any]) -> None:
        v = d.get(key)
        setattr(msg, pname, zero if v is None else conv(v))
    return _guard(key, scalar)


def _fill_inline(sub: Any, name: str, d: dict[str, Any]) -> None:
    enc = _encoder(name)
    for step in enc.steps:
        step(sub, d)


def _guard(key: str, step: Callable[[Any, dict[str, Any]], None]) -> Callable[[Any, dict[str, Any]], None]:
    def guarded(msg: Any, d: dict[str, Any]) -> None:
        try:
            step(msg, d)
        except EncodeFailure as exc:
            if not exc.path or exc.path[0] != key:
                exc.path.insert(0, key)
            raise
        except (TypeError, ValueError, OverflowError, binascii.Error) as exc:
            raise EncodeFailure([key], str(exc)[:200]) from exc
    return guarded


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
