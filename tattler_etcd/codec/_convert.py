"""Protobuf message -> the JSON-shaped dict the APIServer serves.

Why it is built this way: upb parses a Pod in a few microseconds; building the
Python dict is what costs. So each message type gets a converter prepared once
(on first use) from the schema, with no reflection on names at run time:

- most types get Python source generated from the schema (one statement per
  field, keys in Go's order) and compiled: non-pointer fields need no presence
  check, because upb's default for an absent field is Go's zero value;
- sparse types (mostly pointers, few set, e.g. VolumeSource) ask upb for the
  present fields only (``ListFields()``, in C), dispatch each through a
  prepared table and copy prepared defaults for the rest.

The Go rules that decide the JSON shape (see ``docs/codec.md``):

- a zero scalar is omitted when the field is ``omitempty`` and not a pointer;
- a present pointer is always written, even 0/false/"";
- a non-pointer struct is always written (``{}`` with its own defaults,
  ``null`` for an empty Time, ``"0"`` for Quantity...);
- an absent slice, map or ``[]byte`` is ``null`` unless ``omitempty``;
- embedded (inline) structs are flattened into the parent object.

Unknown fields (numbers the schema does not know, e.g. from a newer server)
are kept under the key ``"$unknown"`` of the object they were found in, as
base64 of their raw wire bytes, and counted; :func:`encode` writes them back.
"""

from __future__ import annotations

import binascii
import json
import keyword
import logging
import threading
from collections.abc import Callable
from typing import Any

from google.protobuf.unknown_fields import UnknownFieldSet

# _api imports this module and _embedded calls back into _api.decode (a nested
# object); the module, not the name: _api is half-initialized while this runs.
from tattler_etcd.codec import _api, _gotime
from tattler_etcd.codec._schema import SCHEMA, Field, Message
from tattler_etcd.stats import Counters

__all__ = ["UNKNOWN_KEY", "Converter", "converter", "counters", "unknown_wire_bytes"]

_log = logging.getLogger(__name__)

#: Where unknown protobuf fields of a message are kept in its dict.
UNKNOWN_KEY = "$unknown"

#: Codec-wide counts: ``codec.unknown_fields`` (fields kept under ``$unknown``).
counters = Counters()

_b64 = binascii.b2a_base64


def _b64s(value: bytes) -> str:
    return _b64(value, newline=False).decode("ascii")


class Converter:
    """Prepared conversion for one message type.

    ``value(msg)`` gives the JSON value (a dict, or a string/number/list for the
    special types); ``fill(d, msg)`` writes the present fields of ``msg`` into
    ``d`` (used for inline structs and for the top-level object).
    """

    __slots__ = ("dyn", "fill", "fills_all", "message", "static", "value")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.static: dict[str, Any] = {}
        self.dyn: list[tuple[str, Callable[[], Any]]] = []
        self.fill: Callable[[dict[str, Any], Any], None] = _not_ready
        self.value: Callable[[Any], Any] = _not_ready
        #: fill() writes every field, defaults included (generated converters)
        self.fills_all = False


def _not_ready(*args: Any) -> Any:  # pragma: no cover - replaced during preparation
    raise RuntimeError("converter used before it was prepared")


_converters: dict[str, Converter] = {}

#: Tests set this to "generated" or "listfields" (then clear ``_converters``
#: and ``_zeros``) to check that both strategies give the same JSON.
FORCE_STRATEGY: str | None = None


#: Preparation happens once per type, under this lock (decode may run in
#: threads); a type being prepared is visible only to the preparing thread.
_lock = threading.RLock()
_preparing: dict[str, Converter] = {}


def converter(name: str) -> Converter:
    """The converter for a full message name, prepared on first use."""
    conv = _converters.get(name)
    if conv is not None:
        return conv
    with _lock:
        conv = _converters.get(name) or _preparing.get(name)
        if conv is not None:
            return conv  # ready, or being prepared by this thread (recursive types)
        conv = Converter(SCHEMA.messages[name])
        _preparing[name] = conv
        try:
            _prepare(conv)
        finally:
            del _preparing[name]
        _converters[name] = conv
        return conv


def unknown_wire_bytes(msg: Any) -> bytes:
    """The unknown fields of ``msg`` (not nested ones) re-encoded as wire bytes."""
    out = bytearray()
    for f in UnknownFieldSet(msg):
        _wire_field(out, f.field_number, f.wire_type, f.data)
    return bytes(out)


def _varint(out: bytearray, n: int) -> None:
    n &= (1 << 64) - 1
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _wire_field(out: bytearray, number: int, wire_type: int, data: Any) -> None:
    _varint(out, (number << 3) | wire_type)
    if wire_type == 0:
        _varint(out, data)
    elif wire_type == 1:
        out += int(data).to_bytes(8, "little")
    elif wire_type == 5:
        out += int(data).to_bytes(4, "little")
    elif wire_type == 2:
        _varint(out, len(data))
        out += data
    elif wire_type == 3:  # group: nested set, then the end tag
        for f in data:
            _wire_field(out, f.field_number, f.wire_type, f.data)
        _varint(out, (number << 3) | 4)


def _keep_unknown(d: dict[str, Any], msg: Any) -> None:
    raw = unknown_wire_bytes(msg)
    if raw:
        numbers = sorted({f.field_number for f in UnknownFieldSet(msg)})
        counters.add("codec.unknown_fields", len(UnknownFieldSet(msg)))
        # names and numbers only: logs never carry values
        _log.info("unknown fields %s in %s kept under %r", numbers, msg.DESCRIPTOR.full_name, UNKNOWN_KEY)
        d[UNKNOWN_KEY] = _b64s(raw)


def _special_value(special: str) -> Callable[[Any], Any]:
    if special == "time":
        fmt = _gotime.format_time

        def time_value(m: Any) -> Any:
            s = m.seconds
            if s or m.HasField("seconds") or m.HasField("nanos"):
                return fmt(s)
            return None  # an empty Time message: Go's zero time

        return time_value
    if special == "microtime":
        fmt_micro = _gotime.format_micro_time

        def micro_value(m: Any) -> Any:
            s = m.seconds
            if s or m.HasField("seconds") or m.HasField("nanos"):
                return fmt_micro(s, m.nanos)
            return None

        return micro_value
    if special == "duration":
        fmt_d = _gotime.format_duration
        return lambda m: fmt_d(m.duration)
    if special == "quantity":
        return lambda m: m.string or "0"
    if special == "intorstring":

        def int_or_string(m: Any) -> Any:
            t = m.type
            if t == 0:
                return m.intVal
            if t == 1:
                return m.strVal
            raise ValueError(f"IntOrString of impossible type {t}")

        return int_or_string
    if special == "rawextension":
        return lambda m: _embedded(m.raw) if m.HasField("raw") else None
    if special == "fieldsv1":
        return lambda m: _embedded(m.Raw) if m.HasField("Raw") else None
    if special == "stringlist":
        return lambda m: list(m.items)
    raise RuntimeError(f"unknown special type {special!r}")


def _embedded(raw: bytes) -> Any:
    """Bytes held by RawExtension/FieldsV1: embedded JSON, or a nested ``k8s\\0`` object."""
    if raw.startswith(b"k8s\x00"):
        return _api.decode(raw)
    if not raw:
        raise ValueError("an embedded object is empty (neither JSON nor null)")
    return json.loads(raw)


_SPECIAL_ZERO: dict[str, Any] = {
    "time": None, "microtime": None, "duration": "0s", "quantity": "0", "intorstring": 0,
    "rawextension": None, "fieldsv1": None,
}
_SCALAR_ZERO: dict[str, Any] = {"string": "", "int32": 0, "int64": 0, "bool": False, "uint32": 0,
                                "uint64": 0, "double": 0.0, "float": 0.0}


def _clone(template: dict[str, Any]) -> dict[str, Any]:
    return {k: _clone(v) if type(v) is dict else v for k, v in template.items()}


def _cloner(template: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    return lambda: _clone(template)


def _prepare(conv: Converter) -> None:
    message = conv.message
    cls = SCHEMA.message_class(message.name)
    desc = cls.DESCRIPTOR
    if message.special is not None:
        conv.value = _special_value(message.special)
        conv.fill = _not_ready
        return
    if strategy(message) == "generated":
        _generate(conv)
        return
    # A sparse message (most fields are pointers, few present: VolumeSource,
    # PersistentVolumeSource...): ask upb for the present fields only.
    # fd -> (code, key, sub): the common shapes are handled inline in the loop
    # (no call per scalar field); the rest go through a prepared handler.
    table: dict[Any, tuple[int, str, Any]] = {}
    static = conv.static
    dyn = conv.dyn
    for f in message.fields:
        fd = desc.fields_by_number[f.number]
        table[fd] = _dispatch(f)
        _add_default(f, static, dyn)

    get = table.get
    has_dyn = bool(dyn)
    ufs = UnknownFieldSet

    def fill(d: dict[str, Any], msg: Any) -> None:
        for fd, v in msg.ListFields():
            h = get(fd)
            if h is None:
                continue
            code, key, sub = h
            if code == 0:
                d[key] = v
            elif code == 1:
                if v:
                    d[key] = v
            elif code == 2:
                d[key] = sub.value(v)
            elif code == 3:
                sv = sub.value
                d[key] = list(map(sv, v))
            else:
                sub(d, v)
        if ufs(msg):
            _keep_unknown(d, msg)

    # Keys come out as: defaults first, then present fields by number. Where
    # that differs from Go's order, put them back in Go's order (sparse types
    # are few per object, so this costs little).
    order = _key_order(message)
    numbers = [f.number for f in message.fields]
    reorder: tuple[str, ...] | None = order if (static or dyn or numbers != sorted(numbers)) else None

    def value(msg: Any) -> dict[str, Any]:
        d = static.copy()
        fill(d, msg)
        if has_dyn:
            for key, factory in dyn:
                if key not in d:
                    d[key] = factory()
        if reorder is not None:
            d = {k: d[k] for k in reorder if k in d}
        return d

    conv.fill = fill
    conv.value = value


def _key_order(message: Message) -> tuple[str, ...]:
    """The JSON keys of a message in Go's order (inline structs expanded), then ``$unknown``."""
    keys: list[str] = []
    for f in message.fields:
        if f.inline:
            keys.extend(k for k in _key_order(SCHEMA.messages[f.type]) if k != UNKNOWN_KEY)
        else:
            keys.append(f.json_name)
    keys.append(UNKNOWN_KEY)
    return tuple(dict.fromkeys(keys))


def _needs_presence(f: Field) -> bool:
    return f.label == "opt" and (f.pointer or f.removed or (f.type == "bytes" and not f.omitempty))


def strategy(message: Message) -> str:
    """How a message (not a special type) is converted: ``generated`` code filling every field, or ``listfields``.

    Known without preparing the converter: the C decoder's tables need only this.
    """
    return FORCE_STRATEGY or ("listfields" if _is_sparse(message) else "generated")


def _is_sparse(message: Message) -> bool:
    """Many fields that need a presence check: cheaper to list the present ones."""
    n = sum(1 for f in message.fields if _needs_presence(f))
    return n >= 6 and n * 2 > len(message.fields)


_KEEP = (_SCALAR_ZERO, None)


def _generate(conv: Converter) -> None:
    """Write Python source for this message's converter and compile it.

    Non-pointer scalars need no presence check: upb returns the proto
    default for an absent field, which is Go's zero value. Non-pointer structs
    convert the default instance upb returns, which gives Go's zero JSON
    (``{}`` with its own defaults, ``null`` for Time, ``"0"`` for Quantity).
    Keys come out in field order, as Go writes them.
    """
    message = conv.message
    env: dict[str, Any] = {"_b64s": _b64s, "_ufs": UnknownFieldSet, "_keep": _keep_unknown}
    body: list[str] = []

    def ref(obj: Any) -> str:
        name = f"_r{len(env)}"
        env[name] = obj
        return name

    def ref_value(sub: Converter) -> str:
        # the sub-converter's function itself when ready (one lookup less per call);
        # while a recursive type is being prepared, look it up at call time
        if sub.value is _not_ready:
            return f"{ref(sub)}.value"
        return ref(sub.value)

    for f in message.fields:
        body.extend(_field_code(f, ref, ref_value))
    body.append("if _ufs(m):")
    body.append("    _keep(d, m)")
    indented = "\n".join("    " + line for line in body)
    # An inline sparse struct (VolumeSource in Volume) fills its keys in field
    # number order; where Go's order differs, put the keys back in Go's order.
    ret = "    return d\n"
    for f in message.fields:
        if f.inline and _is_sparse(SCHEMA.messages[f.type]):
            numbers = [g.number for g in SCHEMA.messages[f.type].fields]
            if numbers != sorted(numbers):
                ret = f"    return {{k: d[k] for k in {ref(_key_order(message))} if k in d}}\n"
    src = (
        f"def value(m):\n    d = {{}}\n{indented}\n{ret}"
        f"def fill(d, m):\n{indented}\n"
    )
    code = compile(src, f"<codec converter {message.name}>", "exec")
    exec(code, env)  # noqa: S102 - our own generated source, from the schema only
    conv.value = env["value"]
    conv.fill = env["fill"]
    conv.fills_all = True


def _attr(f: Field) -> str:
    p = f.proto_name
    return f"m.{p}" if p.isidentifier() and not keyword.iskeyword(p) else f"getattr(m, {p!r})"


def _field_code(f: Field, ref: Callable[[Any], str], ref_value: Callable[[Converter], str]) -> list[str]:
    k = repr(f.json_name)
    a = _attr(f)
    has = f"m.HasField({f.proto_name!r})"
    absent = [] if (f.omitempty or f.removed) else [f"    d[{k}] = None"]
    if f.inline:
        sub = ref(converter(f.type))
        if f.pointer or f.removed:
            return [f"if {has}:", f"    {ref(_handler(f))}(d, {a})"]
        return [f"{sub}.fill(d, {a})"]
    if f.label == "map":
        if f.type == "bytes":
            expr = "{kk: _b64s(v[kk]) for kk in sorted(v)}"
        elif f.is_message:
            expr = "{kk: sv(v[kk]) for kk in sorted(v)}"
        else:
            expr = "{kk: v[kk] for kk in sorted(v)}"  # Go writes map keys sorted
        if f.is_message and SCHEMA.messages[f.type].special == "quantity":
            expr = '{kk: v[kk].string or "0" for kk in sorted(v)}'
        pre = [f"    sv = {ref_value(converter(f.type))}"] if f.is_message else []
        return [f"v = {a}", "if v:", *pre, f"    d[{k}] = {expr}", *(["else:", *absent] if absent else [])]
    if f.label == "rep":
        if f.type == "bytes":
            expr = "[_b64s(x) for x in v]"
        elif f.is_message:
            expr = "list(map(sv, v))"  # no comprehension frame: faster on 3.11
        else:
            expr = "list(v)"
        pre = [f"    sv = {ref_value(converter(f.type))}"] if f.is_message else []
        return [f"v = {a}", "if v:", *pre, f"    d[{k}] = {expr}", *(["else:", *absent] if absent else [])]
    if f.is_message:
        sub_conv = converter(f.type)
        sub = ref_value(sub_conv)
        special = sub_conv.message.special
        if f.pointer or f.removed:
            return [f"if {has}:", f"    d[{k}] = {sub}({a})", *(["else:", *absent] if absent else [])]
        if special == "stringlist":  # a named []string: nil vs empty is presence
            if f.omitempty:
                return [f"v = {a}.items", "if v:", f"    d[{k}] = list(v)"]
            return [f"if {has}:", f"    d[{k}] = list({a}.items)", "else:", f"    d[{k}] = None"]
        if special == "time":
            # inlined (a Pod has a dozen): seconds first, presence only for 0
            fmt = ref(_gotime.format_time)
            code = [f"x = {a}", "s = x.seconds",
                    "t = " + fmt + "(s) if s or x.HasField('seconds') or x.HasField('nanos') else None"]
            if f.omitzero:
                return [*code, "if t is not None:", f"    d[{k}] = t"]
            return [*code, f"d[{k}] = t"]
        if f.omitzero:
            zero = ref(_SPECIAL_ZERO[special] if special else _zero_json(sub_conv))
            return [f"x = {sub}({a})", f"if x != {zero}:", f"    d[{k}] = x"]
        if special == "quantity":
            return [f"d[{k}] = {a}.string or '0'"]
        return [f"d[{k}] = {sub}({a})"]
    # A removed field keeps its own release's omitempty: gogo wrote non-pointer
    # scalars even when empty (ObjectMeta.clusterName "" in every object stored
    # before 1.24), and that release's JSON left them out.
    if f.type == "bytes":
        if f.omitempty and not f.pointer:
            return [f"v = {a}", "if v:", f"    d[{k}] = _b64s(v)"]
        return [f"if {has}:", f"    d[{k}] = _b64s({a})", *(["else:", *absent] if absent else [])]
    if f.pointer or (f.removed and not f.omitempty):
        return [f"if {has}:", f"    d[{k}] = {a}", *(["else:", *absent] if absent else [])]
    if f.omitempty:
        return [f"v = {a}", "if v:", f"    d[{k}] = v"]
    return [f"d[{k}] = {a}"]


_zeros: dict[str, Any] = {}


def _zero_json(conv: Converter) -> Any:
    """The JSON of an absent non-pointer struct (computed once; callers copy it)."""
    name = conv.message.name
    if name not in _zeros:
        _zeros[name] = conv.value(SCHEMA.message_class(name)())
    return _zeros[name]


def _dispatch(f: Field) -> tuple[int, str, Any]:
    """(code, key, sub) for one field: 0 scalar, 1 omitempty scalar, 2 message,
    3 repeated message, 4 call ``sub(d, v)``."""
    key = f.json_name
    if f.label == "rep" and f.is_message:
        sub = converter(f.type)
        if sub.message.special is None or sub.message.special in ("quantity", "time", "microtime", "intorstring"):
            return 3, key, sub
    if f.label == "opt" and f.is_message and not f.inline and not (f.omitzero and not f.pointer):
        sub = converter(f.type)
        if not (sub.message.special == "stringlist" and f.omitempty and not f.pointer):
            return 2, key, sub
    if f.label == "opt" and not f.is_message and f.type != "bytes":
        return (1 if f.omitempty and not f.pointer else 0), key, None
    return 4, key, _handler(f)


def _add_default(f: Field, static: dict[str, Any], dyn: list[tuple[str, Callable[[], Any]]]) -> None:
    """What an absent field looks like in JSON (nothing, when it is omitted)."""
    key = f.json_name
    if f.removed:
        return  # a field newer servers no longer have: only what is present
    if f.inline:
        if f.pointer:
            return  # a nil embedded pointer contributes no keys
        for k, v in _zero_json(converter(f.type)).items():
            if type(v) is dict:
                dyn.append((k, _cloner(v)))
            else:
                static[k] = v
        return
    if f.pointer:
        if not f.omitempty:
            static[key] = None
        return
    if f.label in ("rep", "map") or f.type == "bytes":
        if not f.omitempty:
            static[key] = None
        return
    if not f.is_message:
        if not f.omitempty:
            static[key] = _SCALAR_ZERO[f.type]
        return
    if f.omitzero:
        return
    sub_msg = SCHEMA.messages[f.type]
    if sub_msg.special == "stringlist":  # a named []string: a slice, so omitempty applies
        if not f.omitempty:
            static[key] = None
        return
    if sub_msg.special is not None:
        static[key] = _SPECIAL_ZERO[sub_msg.special]
        return
    zero = _zero_json(converter(f.type))
    dyn.append((key, lambda: _clone(zero)))


def _handler(f: Field) -> Callable[[dict[str, Any], Any], None]:
    key = f.json_name
    if f.label == "map":
        if f.type == "bytes":
            def h_map_bytes(d: dict[str, Any], v: Any) -> None:
                d[key] = {k: _b64s(v[k]) for k in sorted(v)}
            return h_map_bytes
        if not f.is_message:
            def h_map(d: dict[str, Any], v: Any) -> None:
                d[key] = {k: v[k] for k in sorted(v)}
            return h_map
        sub = converter(f.type)

        def h_map_msg(d: dict[str, Any], v: Any) -> None:
            sv = sub.value
            d[key] = {k: sv(v[k]) for k in sorted(v)}
        return h_map_msg
    if f.label == "rep":
        if f.type == "bytes":
            def h_rep_bytes(d: dict[str, Any], v: Any) -> None:
                d[key] = [_b64s(x) for x in v]
            return h_rep_bytes
        if not f.is_message:
            def h_rep(d: dict[str, Any], v: Any) -> None:
                d[key] = list(v)
            return h_rep
        sub = converter(f.type)

        def h_rep_msg(d: dict[str, Any], v: Any) -> None:
            sv = sub.value
            d[key] = list(map(sv, v))
        return h_rep_msg
    if f.inline:
        sub = converter(f.type)
        if f.pointer or f.removed:
            def h_inline_ptr(d: dict[str, Any], v: Any) -> None:
                # a non-nil embedded pointer: its zero JSON, then its present fields
                for k, val in _zero_json(sub).items():
                    if k not in d:
                        d[k] = _clone(val) if type(val) is dict else val
                sub.fill(d, v)
            return h_inline_ptr

        def h_inline(d: dict[str, Any], v: Any) -> None:
            sub.fill(d, v)
        return h_inline
    if f.is_message:
        sub = converter(f.type)
        if f.omitzero and not f.pointer:
            zero = _SPECIAL_ZERO[sub.message.special] if sub.message.special else _zero_json(sub)

            def h_msg_omitzero(d: dict[str, Any], v: Any) -> None:
                x = sub.value(v)
                if x != zero:
                    d[key] = x
            return h_msg_omitzero
        if sub.message.special == "stringlist" and f.omitempty and not f.pointer:
            def h_strlist_omit(d: dict[str, Any], v: Any) -> None:
                if v.items:
                    d[key] = list(v.items)
            return h_strlist_omit

        def h_msg(d: dict[str, Any], v: Any) -> None:
            d[key] = sub.value(v)
        return h_msg
    if f.type == "bytes":
        if f.omitempty and not f.pointer:
            def h_bytes_omit(d: dict[str, Any], v: Any) -> None:
                if v:
                    d[key] = _b64s(v)
            return h_bytes_omit

        def h_bytes(d: dict[str, Any], v: Any) -> None:
            d[key] = _b64s(v)
        return h_bytes
    if f.omitempty and not f.pointer:
        def h_scalar_omit(d: dict[str, Any], v: Any) -> None:
            if v:
                d[key] = v
        return h_scalar_omit

    def h_scalar(d: dict[str, Any], v: Any) -> None:
        d[key] = v
    return h_scalar
