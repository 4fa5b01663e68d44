"""The optional C decoder (``_cdecode``): tables made from the converter's rules.

Why: :func:`tattler_etcd.codec.decode` spends nearly all its time in Python
attribute access and dict building (``_convert.py``); the same work in C,
straight from the wire bytes, is ~5x faster (docs/performance.md). The C
side knows no Kubernetes rule: this module turns each message of the schema,
and the rule the pure-Python converter applies to each field (the same
decisions as ``_convert._field_code``), into a table, and ``_cdecode`` only
executes tables. Whatever the C side does not handle (unknown fields, a
wire type the schema does not expect, invalid UTF-8, a message field
repeated on the wire...) comes back as None and the pure-Python path
decodes the value: same result, or the right error.

Chosen automatically: used when the extension was built (``pip install
-e .`` builds it when a C compiler and the Python headers are there; without
them the install goes on and the package is pure Python). Set
``TATTLER_ETCD_PURE_PYTHON=1`` to turn it off (tests compare both paths on
every fixture).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from tattler_etcd.codec import _api, _convert, _gotime
from tattler_etcd.codec._schema import SCHEMA, Field, Message
from tattler_etcd.errors import CodecError

__all__ = ["AVAILABLE", "decode", "enabled", "has_unknown", "json_bytes", "redact_raw", "set_enabled"]

#: The table layout this file writes; ``_cdecode.c``'s ``TABLES_ABI`` must match.
TABLES_ABI = 2


def _usable(module: Any) -> bool:
    """Whether a built ``_cdecode`` reads the tables this file makes.

    Why: a checkout keeps its compiled module across ``git pull``; one built
    from an older ``_cdecode.c`` would read new tables wrongly (and crash), so
    it is refused, with a warning saying how to rebuild, and Python decodes.
    """
    found = getattr(module, "TABLES_ABI", None)
    if found == TABLES_ABI:
        return True
    warnings.warn(f"tattler_etcd.codec._cdecode was built for table layout {found}, not {TABLES_ABI}: "
                  "using the pure-Python decoder; rebuild with `pip install -e .` (or bash scripts/setup.sh)",
                  RuntimeWarning, stacklevel=2)
    return False


try:
    from tattler_etcd.codec import _cdecode  # type: ignore[attr-defined]
except ImportError:  # not built: the pure-Python path
    _cdecode = None
if _cdecode is not None and not _usable(_cdecode):
    _cdecode = None

#: The extension is there (built at install).
AVAILABLE = _cdecode is not None
_enabled = AVAILABLE and os.environ.get("TATTLER_ETCD_PURE_PYTHON", "") in ("", "0")

# Must match the enums in _cdecode.c.
_T = {"string": 1, "bytes": 2, "bool": 3, "int32": 4, "int64": 5, "uint32": 6, "uint64": 7, "double": 8,
      "float": 9}
_T_MSG = 10
_L_OPT, _L_REP, _L_MAP = 0, 1, 2
(M_SCALAR, M_SCALAR_OMIT, M_PRESENCE, M_BYTES_OMIT, M_COLLECTION, M_MSG, M_MSG_OMITZERO, M_STRLIST_OMIT,
 M_STRLIST_PRESENCE, M_INLINE) = range(1, 11)
_S = {None: 0, "time": 1, "microtime": 2, "duration": 3, "quantity": 4, "intorstring": 5, "rawextension": 6,
      "fieldsv1": 7, "stringlist": 8}


def enabled() -> bool:
    """True when :func:`decode` uses the C decoder."""
    return _enabled


def set_enabled(on: bool) -> None:
    """Turn the C decoder on or off (tests; it cannot be turned on when it was not built)."""
    global _enabled
    _enabled = bool(on) and AVAILABLE


class _Unsupported(Exception):
    """A message the tables cannot express: its kind is always decoded in Python."""


#: message name -> its table (a list, so recursive types can refer to themselves), or None.
_specs: dict[str, list[Any] | None] = {}
_building: dict[str, list[Any]] = {}


def _spec(name: str) -> list[Any]:
    spec = _specs.get(name) or _building.get(name)
    if spec is not None:
        return spec
    if name in _specs:  # known unsupported
        raise _Unsupported(name)
    message = SCHEMA.messages[name]
    spec = [b"", (), _S[message.special], False, None, (), None, b"", b"", b"", b""]
    _building[name] = spec
    try:
        if message.special is None:
            _fill_spec(spec, message)
        elif not _special_ok(message):
            raise _Unsupported(name)
    except _Unsupported:
        _specs[name] = None
        raise
    finally:
        del _building[name]
    _specs[name] = spec
    return spec


def _special_ok(message: Message) -> bool:
    """The special types' fields are what ``_cdecode.special_value`` reads."""
    expected = {
        "time": [(1, "int64"), (2, "int32")], "microtime": [(1, "int64"), (2, "int32")],
        "duration": [(1, "int64")], "quantity": [(1, "string")],
        "intorstring": [(1, "int64"), (2, "int32"), (3, "string")], "rawextension": [(1, "bytes")],
        "fieldsv1": [(1, "bytes")], "stringlist": [(1, "string")],
    }[message.special or ""]
    return sorted((f.number, f.type) for f in message.fields) == expected


def _fill_spec(spec: list[Any], message: Message) -> None:
    # The converter itself (compiled Python, ~0.25 ms a message type) is needed only for a
    # sparse message's defaults: a Pod's table was ~40 ms a start, most of it compiling code
    # the C decoder never runs.
    sparse = _convert.strategy(message) != "generated"
    if max((f.number for f in message.fields), default=0) > 1024 or len(message.fields) > 250:
        raise _Unsupported(message.name)
    lookup = bytearray(max((f.number for f in message.fields), default=0) + 1)
    for i, f in enumerate(message.fields):
        lookup[f.number] = i + 1
    spec[0] = bytes(lookup)
    spec[1] = fields = tuple(_field(f) for f in message.fields)
    spec[8] = bytes(f[0] for f in fields)  # types, labels and modes by field index, for the C side
    spec[9] = bytes(f[1] for f in fields)
    spec[10] = bytes(f[2] for f in fields)
    spec[3] = sparse
    numbers = [f.number for f in message.fields]
    if sparse:
        conv = _convert.converter(message.name)
        spec[4] = dict(conv.static) if conv.static else None
        spec[5] = tuple((key, factory()) for key, factory in conv.dyn)
        if conv.static or conv.dyn or numbers != sorted(numbers):
            spec[6] = _convert._key_order(message)
        spec[7] = bytes(sorted(range(len(numbers)), key=numbers.__getitem__))
    else:
        for f in message.fields:
            if f.inline and _convert._is_sparse(SCHEMA.messages[f.type]):
                sub_numbers = [g.number for g in SCHEMA.messages[f.type].fields]
                if sub_numbers != sorted(sub_numbers):
                    spec[6] = _convert._key_order(message)
        spec[7] = bytes(range(len(numbers)))


def _field(f: Field) -> tuple[Any, ...]:
    """(type, label, mode, key, sub, null_absent, zero): the rule ``_convert._field_code`` writes."""
    null_absent = not (f.omitempty or f.removed)
    t = _T_MSG if f.is_message else _T[f.type]
    sub = _spec(f.type) if f.is_message else None
    key = f.json_name
    zero: Any = None
    if f.inline:
        if f.pointer or f.removed or SCHEMA.messages[f.type].special is not None:
            raise _Unsupported(f.json_name)
        return (t, _L_OPT, M_INLINE, key, sub, null_absent, None)
    if f.label in ("map", "rep"):
        return (t, _L_MAP if f.label == "map" else _L_REP, M_COLLECTION, key, sub, null_absent, None)
    if f.is_message:
        special = SCHEMA.messages[f.type].special
        if f.pointer or f.removed:
            mode = M_PRESENCE
        elif special == "stringlist":
            mode = M_STRLIST_OMIT if f.omitempty else M_STRLIST_PRESENCE
        elif special == "time":
            mode = M_MSG_OMITZERO if f.omitzero else M_MSG
        elif f.omitzero:
            mode = M_MSG_OMITZERO
            zero = (_convert._SPECIAL_ZERO[special] if special
                    else _convert._zero_json(_convert.converter(f.type)))
        else:
            mode = M_MSG
        return (t, _L_OPT, mode, key, sub, null_absent, zero)
    if f.type == "bytes":
        mode = M_BYTES_OMIT if f.omitempty and not f.pointer else M_PRESENCE
        return (t, _L_OPT, mode, key, None, null_absent, None)
    if f.pointer or (f.removed and not f.omitempty):
        return (t, _L_OPT, M_PRESENCE, key, None, null_absent, None)
    if f.omitempty:
        return (t, _L_OPT, M_SCALAR_OMIT, key, None, null_absent, None)
    return (t, _L_OPT, M_SCALAR, key, None, null_absent, _convert._SCALAR_ZERO[f.type])


def _table(name: str) -> list[Any] | None:
    spec = _specs.get(name)
    if spec is None and name not in _specs:
        try:
            spec = _spec(name)
        except _Unsupported:
            _specs[name] = None
            return None
    return spec


def decode(name: str, raw: bytes, kind: str, api_version: str) -> dict[str, Any] | None:
    """The object of message ``name`` from its wire bytes, or None: then the Python path decides."""
    if not _enabled or not kind:
        return None
    spec = _table(name)
    if spec is None:
        return None
    result: dict[str, Any] | None = _cdecode.decode(spec, raw, kind, api_version, not spec[3])
    return result


def json_bytes(value: bytes, resource_version: str | None = None,
               head: dict[str, Any] | None = None) -> bytes | None:
    """``jsonout.dumps(codec.decode(value))``, written by C straight from the wire bytes, or None.

    Why: the JSON-lines writer turned every object into a dict (the C
    decoder) and the dict into text (orjson, then the small-float scan):
    two passes and a few hundred Python objects per Pod, most of the
    command's CPU. ``_cdecode.json`` runs the decoder's tables and writes
    the text the dict would have given, byte for byte (key order, omitted
    and null fields, sorted map keys, times, embedded JSON re-dumped), with
    no dict in between. ``resource_version`` (when not empty) replaces
    ``metadata.resourceVersion`` as :meth:`Entry._decode
    <tattler_etcd.data.Entry>` does; with ``head`` (a dict of str/None) the
    result is the whole line ``{**head, "object": <object>}``.

    None when it cannot (not built or turned off, a JSON value, bytes the
    decoder leaves to Python or would refuse, floats, invalid UTF-8...):
    then the caller takes the dict path, which writes the same text or
    raises the right error.
    """
    if not _enabled:
        return None
    try:
        value = _api._check(value, _api.DEFAULT_MAX_SIZE)
        if _api.is_json(value):
            return None
        api_version, kind, raw = _api._split_envelope(value)
        if not kind:
            return None
        spec = _table(_api._message_for(api_version, kind))
    except CodecError:  # the dict path raises it again, with the same words
        return None
    if spec is None:
        return None
    out: bytes | None = _cdecode.json(spec, raw, kind, api_version, not spec[3], resource_version, head)
    return out


def has_unknown(name: str, raw: bytes) -> bool | None:
    """Whether message ``name``'s wire bytes hold a field the schema does not know, at any depth.

    None when it cannot tell (not built or turned off, a table it cannot make,
    bytes that are not valid protobuf): then upb is asked. Why: the safety
    stage drops unknown fields (``codec.drop_unknown``), and asking upb means
    parsing the whole object, walking it (``DiscardUnknownFields``) and
    sizing it twice, ~15-20 us for a small Pod; this scan of the bytes costs
    ~1-2 us, and nearly every object has no unknown field.
    """
    if not _enabled:
        return None
    spec = _table(name)
    if spec is None:
        return None
    found: bool | None = _cdecode.has_unknown(spec, raw)
    if found is not None:
        global _last_sound
        _last_sound = raw
    return found


#: The last bytes :func:`has_unknown` walked whole and found sound: :func:`redact_raw`
#: needs that check too, and the safety stage asks both about the same bytes in a row.
_last_sound: bytes | None = None


class _Unreachable(Exception):
    """A path the wire-level redaction does not take (the upb walker does)."""


def _chain(message: str, json_name: str) -> list[Field]:
    """The fields reaching ``json_name`` in ``message``, through inline structs (as in JSON)."""
    for f in SCHEMA.messages[message].fields:
        if f.inline:
            if f.pointer or f.removed or f.label != "opt" or SCHEMA.messages[f.type].special is not None:
                continue
            try:
                return [f, *_chain(f.type, json_name)]
            except _Unreachable:
                continue
        elif f.json_name == json_name:
            return [f]
    raise _Unreachable(json_name)


def _wire_trie(name: str, paths: tuple[tuple[str, ...], ...]) -> dict[int, Any]:
    """JSON paths -> {field number: (what, child)} for ``_cdecode.redact`` (see there); raises _Unreachable."""
    root: dict[int, Any] = {}
    for path in paths:
        node, message, i = root, name, 0
        while True:
            if i >= len(path) or path[i] == "*":
                raise _Unreachable(path)
            chain = _chain(message, path[i])
            *through, f = chain
            for g in through:  # inline structs: one nested message each on the wire
                what, child = node.setdefault(g.number, (0, {}))
                if what != 0:
                    raise _Unreachable(path)
                node = child
            i += 1
            if f.is_message and SCHEMA.messages[f.type].special is None and f.label in ("opt", "rep"):
                rep = f.label == "rep"
                if rep:
                    if i >= len(path) or path[i] != "*":
                        raise _Unreachable(path)  # an index, or the list itself
                    i += 1
                if i >= len(path):
                    raise _Unreachable(path)
                what, child = node.setdefault(f.number, (1 if rep else 0, {}))
                if what != (1 if rep else 0) or child is None:
                    raise _Unreachable(path)
                node, message = child, f.type
                continue
            if f.label == "opt" and f.type in ("string", "bytes") and i == len(path):
                leaf = (2 if f.type == "string" else 3, None)
                if node.setdefault(f.number, leaf) != leaf:
                    raise _Unreachable(path)
                break
            raise _Unreachable(path)  # a map, a list of strings, a special type: the upb walker
    return root


#: (message name, paths) -> the trie, or None when the upb walker must take these paths.
_tries: dict[tuple[str, tuple[tuple[str, ...], ...]], dict[int, Any] | None] = {}


def redact_raw(
    name: str, paths: Any, raw: bytes, fn: Any, inline: tuple[str, bytes] | None = None,
) -> tuple[bytes | None, int, BaseException | None] | None:
    """``codec.redact_parsed`` on the wire bytes of message ``name``: (new bytes or None, leaves changed, error).

    ``error`` is what ``fn`` raised, if it did: the edits made before it are in
    the new bytes (as the upb walker leaves them in the message), the caller
    raises it.
    None when this cannot do it (not built or turned off, a path through a
    map, a list of strings or an index, bytes it does not expect): then the
    upb walker does. Why: parsing a Pod with upb, walking it and serializing
    it costs ~15-20 us; rewriting the few fields on the path in the bytes ~2 us.
    The bytes it gives decode to the same object as upb's serialization (fields
    keep their original order instead of being re-sorted).
    ``inline``: ``fn`` is a ``codec.Replace`` of (text, data): the C code
    writes the constant itself (no Python call per leaf) and adds to
    ``fn.delta`` what the calls would have.
    """
    if not _enabled or type(paths) is not tuple:
        return None
    key = (name, paths)
    trie = _tries.get(key, False)
    if trie is False:
        try:
            trie = _wire_trie(name, paths)
        except (_Unreachable, KeyError):
            trie = None
        if len(_tries) < 4096:  # bounded: paths may come from users
            _tries[key] = trie
    if trie is None:
        return None
    if raw is not _last_sound:
        spec = _table(name)
        if spec is None or _cdecode.has_unknown(spec, raw) is None:
            return None  # bytes a parse would refuse: upb says why (the safety stage then drops them)
    result: tuple[bytes | None, int, BaseException | None] | None = (
        _cdecode.redact(trie, raw, fn) if inline is None else _cdecode.redact(trie, raw, fn, *inline))
    return result


if _cdecode is not None:
    _cdecode.configure(_gotime.format_time, _gotime.format_micro_time, _gotime.format_duration,
                       _convert._embedded, _convert._b64s)
