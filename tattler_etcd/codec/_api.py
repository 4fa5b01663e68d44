"""The codec's public functions: envelopes, decode, encode, peek, lists, watch events."""

from __future__ import annotations

import codecs
import json
from typing import Any, NamedTuple

from google.protobuf.message import DecodeError as _PbDecodeError

from tattler_etcd.codec import _fast
from tattler_etcd.codec._convert import converter, counters
from tattler_etcd.codec._encode import EncodeFailure, fill_message
from tattler_etcd.codec._schema import SCHEMA
from tattler_etcd.codec.wire import CutShort, length_delimited, write_varint
from tattler_etcd.errors import (
    DecodeError,
    EncodeError,
    EncryptedValueError,
    TruncatedValueError,
    UnknownKindError,
    ValueTooLargeError,
)

__all__ = [
    "DEFAULT_MAX_SIZE",
    "MAGIC",
    "Meta",
    "Parsed",
    "decode",
    "decode_watch_event",
    "encode",
    "is_json",
    "parse",
    "peek",
    "split_list",
    "to_bytes",
    "to_dict",
    "wrap",
]

#: The 4 bytes that start every protobuf value the APIServer writes.
MAGIC = b"k8s\x00"
#: Values larger than this are refused before parsing. etcd's own default
#: request limit is 1.5 MiB; clusters raise it, rarely past a few tens of MiB.
DEFAULT_MAX_SIZE = 64 * 1024 * 1024

_ENC_PREFIX = b"k8s:enc:"
_UNKNOWN = "k8s.io.apimachinery.pkg.runtime.Unknown"
_WATCH_EVENT = f"{SCHEMA.meta_package}.WatchEvent"
_Unknown = SCHEMA.message_class(_UNKNOWN)
_WatchEvent = SCHEMA.message_class(_WATCH_EVENT)
_PeekObject = SCHEMA.message_class("tattler.codec.PeekObject")
_ListShell = SCHEMA.message_class("tattler.codec.ListShell")
_OBJECT_META = f"{SCHEMA.meta_package}.ObjectMeta"
_PARSE_ERRORS = (_PbDecodeError, ValueError, TypeError, UnicodeDecodeError, OverflowError, RecursionError)


def _go_replace(exc: UnicodeError) -> tuple[str, int]:
    # Go's JSON encoder replaces each invalid byte with U+FFFD, one at a time.
    assert isinstance(exc, UnicodeDecodeError)
    return "\ufffd", exc.start + 1


codecs.register_error("tattler-go-replace", _go_replace)


def _text(b: bytes) -> str:
    return b.decode("utf-8", "tattler-go-replace")


def _wire_fields(buf: bytes) -> list[tuple[int, int, Any, bytes]]:
    """(number, wire type, value, the field's raw bytes) for each top-level field; ValueError if malformed."""
    out = []
    i, n = 0, len(buf)

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            if i >= n or shift > 63:
                raise ValueError("bad varint")
            c = buf[i]
            i += 1
            result |= (c & 0x7F) << shift
            shift += 7
            if c < 0x80:
                return result

    while i < n:
        start = i
        key = varint()
        wt = key & 7
        value: Any
        if wt == 0:
            value = varint()
        elif wt == 1:
            value, i = buf[i:i + 8], i + 8
        elif wt == 5:
            value, i = buf[i:i + 4], i + 4
        elif wt == 2:
            length = varint()
            value, i = buf[i:i + length], i + length
        else:
            raise ValueError("unsupported wire type")
        if i > n:
            raise ValueError("truncated")
        out.append((key >> 3, wt, value, buf[start:i]))
    return out


def _repair_wire(buf: bytes, name: str | None, map_value: str | None = None) -> bytes:
    """Re-encode ``buf`` (a message ``name``, or a map entry when ``map_value`` is
    given) with every invalid UTF-8 string replaced as Go's JSON encoder would."""
    fields = {f.number: f for f in SCHEMA.messages[name].fields} if name else {}
    out = bytearray()
    for number, wt, value, raw in _wire_fields(buf):
        if wt != 2:
            out += raw
            continue
        if map_value is not None:
            ftype = "string" if number == 1 else map_value
            label = "opt"
        elif number in fields:
            ftype, label = fields[number].type, fields[number].label
        else:
            out += raw
            continue
        if label == "map":
            payload = _repair_wire(value, None, ftype)
        elif ftype == "string":
            payload = _text(value).encode("utf-8")
        elif ftype in SCHEMA.messages:
            payload = _repair_wire(value, ftype)
        else:
            out += raw
            continue
        out += write_varint(number << 3 | 2) + write_varint(len(payload)) + payload
    return bytes(out)


def _parse_typed(name: str, raw: bytes, what: str) -> Any:
    """Parse the typed object; a value with invalid UTF-8 in a string is repaired, not refused."""
    try:
        return SCHEMA.message_class(name).FromString(raw)
    except _PARSE_ERRORS as exc:
        first = exc
    if not isinstance(first, _PbDecodeError):
        raise _parse_error(what, raw, first)
    try:
        msg = SCHEMA.message_class(name).FromString(_repair_wire(bytes(raw), name))
    except (*_PARSE_ERRORS, KeyError):
        raise _parse_error(what, raw, first) from None
    counters.add("codec.invalid_utf8")
    return msg


class Meta(NamedTuple):
    """The identity of one object, read without building its dict."""

    api_version: str
    kind: str
    uid: str
    namespace: str | None
    name: str
    resource_version: str


def is_json(value: bytes) -> bool:
    """True when ``value`` is a JSON object (custom resources, JSON storage), not protobuf."""
    for b in value[:64]:
        if b in b" \t\r\n":
            continue
        return b == 0x7B  # "{"
    return False


def _check(value: bytes, max_size: int) -> bytes:
    """Refuse what must not be parsed (too large, encrypted); give plain bytes."""
    if type(value) is not bytes and not isinstance(value, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(value).__name__}")
    if len(value) > max_size:  # before any copy or parse
        raise ValueTooLargeError(f"value of {len(value)} bytes is over the limit of {max_size} bytes")
    if type(value) is not bytes:
        value = bytes(value)
    if value[:8] == _ENC_PREFIX:
        parts = bytes(value[:256]).split(b":")
        provider = parts[2].decode("ascii", "replace") if len(parts) > 2 else "?"
        key_name = parts[4].decode("ascii", "replace") if len(parts) > 4 else "?"
        raise EncryptedValueError(
            f"value is encrypted at rest (provider {provider}, key {key_name}); "
            "decoding it needs the cluster's encryption key",
            provider=provider,
        )
    return value


def _cut_short(buf: bytes) -> bool:
    """True when the bytes end inside a top-level field (say "truncated", not "not protobuf")."""
    try:
        length_delimited(buf)
    except CutShort:
        return True
    except ValueError:
        return False
    return False


def _parse_error(what: str, buf: bytes, exc: BaseException | None) -> DecodeError:
    if _cut_short(buf):
        return TruncatedValueError(f"{what}: the bytes end inside a field ({len(buf)} bytes)")
    reason = f" ({type(exc).__name__})" if exc is not None else ""
    return DecodeError(f"{what}: not valid protobuf{reason}")


def _envelope(value: bytes) -> Any:
    if value[:4] != MAGIC:
        raise DecodeError("not a Kubernetes object: neither JSON nor the k8s protobuf envelope")
    body = bytes(value[4:])
    try:
        return _Unknown.FromString(body)
    except _PARSE_ERRORS as exc:
        raise _parse_error("envelope", body, exc) from None


#: What may follow ``raw`` in an envelope for the quick split to take it:
#: nothing, or the empty contentEncoding/contentType the APIServer writes.
_ENVELOPE_TAILS = frozenset((b"", b"\x1a\x00\x22\x00", b"\x1a\x00", b"\x22\x00"))
#: ``k8s\0`` + typeMeta, as seen in values upb has already read -> (apiVersion, kind).
_envelope_heads: dict[bytes, tuple[str, str]] = {}


def _split_envelope(value: bytes) -> tuple[str, str, bytes]:
    """(apiVersion, kind, raw) of a ``k8s\\0`` envelope; ``value`` has passed :func:`_check`.

    Why not always upb: every object of a kind starts with the same bytes
    (magic and typeMeta), so once upb has read one, the others are split by
    a dict lookup and a length, cheaper than a upb parse of the envelope plus
    the copies. Anything else (a typeMeta not seen yet or over 127 bytes,
    another layout, unknown fields, truncation) goes to upb, so results and
    errors are upb's.
    """
    try:
        end = 6 + value[5]
        known = _envelope_heads.get(value[:end])
        if known is not None and value[end] == 0x12:
            c = value[end + 1]
            if c < 0x80:
                i, length = end + 2, c
            else:
                c2 = value[end + 2]
                i, length = end + 3, (c & 0x7F) | (c2 << 7)
                if c2 >= 0x80:
                    i = -1  # a longer size: upb reads it
            j = i + length
            if i > 0 and j <= len(value) and value[j:] in _ENVELOPE_TAILS:
                return known[0], known[1], value[i:j]
    except IndexError:
        pass
    env = _envelope(value)
    tm = env.typeMeta
    api_version, kind = tm.apiVersion, tm.kind
    if value[4:5] == b"\x0a" and len(_envelope_heads) < 4096:  # bounded: kinds come from the data
        head = MAGIC + _ld(1, _ld(1, api_version.encode("utf-8")) + _ld(2, kind.encode("utf-8")))
        if len(head) < 134 and value.startswith(head):
            _envelope_heads[head] = (api_version, kind)
    return api_version, kind, env.raw


def _message_for(api_version: str, kind: str) -> str:
    if not kind and not api_version:
        return _WATCH_EVENT  # the one type the APIServer frames without TypeMeta
    name = SCHEMA.kind_message(api_version, kind)
    if name is None:
        raise UnknownKindError(
            f"no schema for apiVersion {api_version!r} kind {kind!r}",
            api_version=api_version, kind=kind,
        )
    return name


def decode(value: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> dict[str, Any]:
    """The object as the APIServer serves it in JSON (``apiVersion`` and ``kind`` included).

    Takes the protobuf envelope (``k8s\\0`` + ``runtime.Unknown``) or a plain
    JSON object. Raises a :class:`~tattler_etcd.errors.DecodeError` subclass
    for anything else.
    """
    value = _check(value, max_size)
    if is_json(value):
        try:
            obj = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise DecodeError(f"invalid JSON value ({type(exc).__name__})") from None
        if not isinstance(obj, dict):
            raise DecodeError("a JSON value that is not an object")
        return obj
    api_version, kind, raw = _split_envelope(value)
    name = _message_for(api_version, kind)
    fast = _fast.decode(name, raw, kind, api_version)  # the C decoder, when built (None: not handled)
    if fast is not None:
        return fast
    return _to_dict(api_version, kind, name, _parse_typed(name, raw, f"{api_version} {kind}"))


def _to_dict(api_version: str, kind: str, name: str, msg: Any) -> dict[str, Any]:
    conv = converter(name)
    try:
        if kind and conv.fills_all:
            d: dict[str, Any] = {"kind": kind, "apiVersion": api_version}  # Go's TypeMeta order
            conv.fill(d, msg)
            return d
        body: dict[str, Any] = conv.value(msg)
    except DecodeError:
        raise
    except (*_PARSE_ERRORS, KeyError) as exc:
        raise DecodeError(f"{api_version} {kind}: cannot convert ({type(exc).__name__}: {str(exc)[:120]})") from None
    if kind:
        return {"kind": kind, "apiVersion": api_version, **body}
    return body


class Parsed:
    """A protobuf object parsed once, so it can be edited and read without parsing it again.

    Made by :func:`parse`; edited by :func:`~tattler_etcd.codec.redact_parsed`;
    read by :func:`to_dict` and :func:`to_bytes`. Why: the pipeline's safety
    stage makes two passes over most objects (the kind's paths, then the
    last-applied annotation with another function); with :func:`redact` each
    pass parsed and serialized the object again. A Parsed is serialized only
    when :func:`to_bytes` is called, and not at all while nothing changed.

    ``api_version`` and ``kind`` are the envelope's. The rest is opaque. The
    typed message is parsed on first need: a kind check, or a redaction whose
    paths reach nothing in the kind, reads only the envelope. Until a leaf is
    changed the original bytes are kept, so :func:`to_bytes` gives them back
    unchanged; after a change no form of the original bytes is kept.
    """

    __slots__ = ("_class", "_message", "_name", "_raw", "_source", "api_version", "kind")

    def __init__(self, api_version: str, kind: str, name: str, cls: type[Any], raw: bytes, source: bytes) -> None:
        self.api_version = api_version
        self.kind = kind
        self._name = name
        self._class = cls
        self._raw: bytes | None = raw
        self._source: bytes | None = source
        self._message: Any = None

    def _typed(self) -> Any:
        """The upb message (parsed now if not yet); the typed bytes are dropped once parsed."""
        msg = self._message
        if msg is None:
            raw = self._raw
            assert raw is not None
            try:
                msg = self._class.FromString(raw)
            except _PARSE_ERRORS:
                # Again through the full path: it repairs invalid UTF-8 or raises the right error.
                msg = _parse_typed(self._name, raw, f"{self.api_version} {self.kind}")
            self._message = msg
            self._raw = None
        return msg

    def _changed(self) -> None:
        """A leaf was edited: the original bytes no longer match (and may hold what was removed)."""
        self._source = None
        self._raw = None

    def __repr__(self) -> str:
        # Never the body: a repr can end up in a log.
        return f"Parsed({self.api_version} {self.kind})"


def parse(value: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Parsed:
    """A protobuf value (``k8s\\0`` envelope) read into a :class:`Parsed`, for editing in place.

    Only protobuf: a JSON value has no message to hold (use :func:`decode`).
    The envelope is read now (so an unknown kind or a broken envelope raises
    here); the object itself when first needed, raising the same errors as
    :func:`decode` then.
    """
    if type(value) is not bytes or value[:4] != MAGIC or len(value) > max_size:
        # (the usual case, plain bytes in the envelope, needs none of these checks)
        value = _check(value, max_size)
        if is_json(value):
            raise DecodeError("a JSON value cannot be parsed as protobuf (decode it instead)")
    api_version, kind, raw = _split_envelope(value)
    typed = _typed_classes.get((api_version, kind))
    if typed is None:
        name = _message_for(api_version, kind)
        typed = (name, SCHEMA.message_class(name))
        if len(_typed_classes) < 4096:  # bounded: kinds come from the data
            _typed_classes[(api_version, kind)] = typed
    return Parsed(api_version, kind, typed[0], typed[1], raw, value)


#: (apiVersion, kind) -> (message name, upb class), for :func:`parse`.
_typed_classes: dict[tuple[str, str], tuple[str, type[Any]]] = {}


def to_dict(parsed: Parsed) -> dict[str, Any]:
    """The object as :func:`decode` gives it (a new dict on every call), from the parsed message."""
    raw = parsed._raw
    if raw is not None:  # not parsed by upb yet: the C decoder may take the bytes
        fast = _fast.decode(parsed._name, raw, parsed.kind, parsed.api_version)
        if fast is not None:
            return fast
    return _to_dict(parsed.api_version, parsed.kind, parsed._name, parsed._typed())


def to_bytes(parsed: Parsed) -> bytes:
    """The object as the APIServer would store it: the original bytes if nothing changed, else re-serialized."""
    source = parsed._source
    if source is not None:
        return source
    return wrap(parsed.api_version, parsed.kind, parsed._typed().SerializeToString(deterministic=True))


def _type_of(obj: dict[str, Any], api_version: str | None, kind: str | None) -> tuple[str, str, str]:
    av = obj.get("apiVersion", api_version or "")
    k = obj.get("kind", kind or "")
    if not isinstance(av, str) or not isinstance(k, str):
        raise EncodeError("apiVersion and kind must be strings")
    if not k and not av and set(obj) <= {"type", "object"}:
        return "", "", _WATCH_EVENT
    name = SCHEMA.kind_message(av, k)
    if name is None:
        raise EncodeError(f"no schema for apiVersion {av!r} kind {k!r}")
    return av, k, name


def encode(obj: dict[str, Any], *, api_version: str | None = None, kind: str | None = None) -> bytes:
    """``obj`` written exactly as the APIServer stores it: ``k8s\\0`` + ``runtime.Unknown``.

    ``apiVersion``/``kind`` come from the object; ``api_version``/``kind`` only
    fill in when it has none. A WatchEvent (``{"type", "object"}``) is framed
    without TypeMeta, as the APIServer does; its object is embedded as
    protobuf when we have its schema, else as JSON.
    """
    if not isinstance(obj, dict):
        raise EncodeError(f"expected a dict, got {type(obj).__name__}")
    av, k, name = _type_of(obj, api_version, kind)
    msg = SCHEMA.message_class(name)()
    try:
        if name == _WATCH_EVENT:
            _fill_watch_event(msg, obj)
        else:
            fill_message(msg, name, obj)
        raw = msg.SerializeToString(deterministic=True)
    except EncodeFailure as exc:
        where = ".".join(exc.path) or "(object)"
        raise EncodeError(f"{av} {k}: field {where}: {exc.reason}") from None
    return wrap(av, k, raw)


def _fill_watch_event(msg: Any, obj: dict[str, Any]) -> None:
    t = obj.get("type", "")
    if not isinstance(t, str):
        raise EncodeFailure(["type"], "expected a string")
    msg.type = t
    o = obj.get("object")
    msg.object.SetInParent()
    if o is None:
        return
    if isinstance(o, dict) and SCHEMA.kind_message(str(o.get("apiVersion", "")), str(o.get("kind", ""))):
        try:
            msg.object.raw = encode(o)
        except EncodeError as exc:
            raise EncodeFailure(["object"], exc.message) from None
    else:
        msg.object.raw = json.dumps(o, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _ld(number: int, payload: bytes) -> bytes:
    return bytes((number << 3 | 2,)) + write_varint(len(payload)) + payload


#: (apiVersion, kind) -> the envelope's bytes up to raw's tag (a few dozen kinds in practice).
_wrap_heads: dict[tuple[str, str], bytes] = {}
_ENVELOPE_TAIL = b"\x1a\x00\x22\x00"


def wrap(api_version: str, kind: str, raw: bytes) -> bytes:
    """The ``k8s\\0`` envelope around a typed message's bytes, as the APIServer writes it."""
    head = _wrap_heads.get((api_version, kind))
    if head is None:
        type_meta = _ld(1, api_version.encode("utf-8")) + _ld(2, kind.encode("utf-8"))
        head = MAGIC + _ld(1, type_meta) + b"\x12"
        if len(_wrap_heads) < 4096:  # bounded: kinds come from the data
            _wrap_heads[(api_version, kind)] = head
    n = len(raw)
    if n < 0x80:
        size = bytes((n,))
    elif n < 0x4000:
        size = bytes((n & 0x7F | 0x80, n >> 7))
    else:
        size = write_varint(n)
    return b"".join((head, size, raw, _ENVELOPE_TAIL))


def peek(value: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Meta:
    """The identity of an object (apiVersion, kind, uid, namespace, name, resourceVersion), cheaply.

    Protobuf values: the envelope split, then the object parsed with a narrow
    view that declares only ObjectMeta's identity fields; JSON values are
    parsed whole.
    """
    if type(value) is not bytes or value[:4] != MAGIC or len(value) > max_size:
        # (the usual case, plain bytes in the envelope, needs none of these checks)
        value = _check(value, max_size)
        if is_json(value):
            obj = decode(value, max_size=max_size)
            meta = obj.get("metadata")
            if not isinstance(meta, dict):
                meta = {}
            return Meta(
                str(obj.get("apiVersion") or ""), str(obj.get("kind") or ""), str(meta.get("uid") or ""),
                meta.get("namespace") or None, str(meta.get("name") or ""), str(meta.get("resourceVersion") or ""),
            )
        if value[:4] != MAGIC:
            raise DecodeError("not a Kubernetes object: neither JSON nor the k8s protobuf envelope")
    # The envelope split as everywhere (errors: the envelope's), then the object
    # read through a view that declares only ObjectMeta's identity fields.
    api_version, kind, raw = _split_envelope(value)
    if _has_object_meta(_message_for(api_version, kind)):
        try:
            m = _PeekObject.FromString(raw).metadata
            return Meta(api_version, kind, m.uid, m.namespace or None, m.name, m.resourceVersion)
        except _PARSE_ERRORS:
            pass  # decode says what is wrong, or repairs invalid UTF-8
    obj = decode(value, max_size=max_size)
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    return Meta(
        str(obj.get("apiVersion", "")), str(obj.get("kind", "")), str(meta.get("uid") or ""),
        meta.get("namespace") or None, str(meta.get("name") or ""), str(meta.get("resourceVersion") or ""),
    )


_object_meta_cache: dict[str, bool] = {}


def _has_object_meta(name: str) -> bool:
    found = _object_meta_cache.get(name)
    if found is None:
        fields = SCHEMA.messages[name].fields
        found = bool(fields) and fields[0].number == 1 and fields[0].type == _OBJECT_META
        _object_meta_cache[name] = found
    return found


def split_list(value: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> tuple[dict[str, Any], list[bytes]]:
    """A protobuf List object (``PodList``...) -> (its list metadata, each item as an envelope).

    Items are not decoded: each comes back as ``k8s\\0`` bytes ready for
    :func:`decode`/:func:`peek`, typed with the list's apiVersion and its kind
    without the ``List`` suffix.
    """
    value = _check(value, max_size)
    env = _envelope(value)
    api_version, kind = env.typeMeta.apiVersion, env.typeMeta.kind
    if not kind.endswith("List") or len(kind) <= 4:
        raise DecodeError(f"{api_version} {kind}: not a List kind")
    _message_for(api_version, kind)
    item_kind = kind[:-4]
    try:
        shell = _ListShell.FromString(env.raw)
        meta = converter(f"{SCHEMA.meta_package}.ListMeta").value(shell.metadata)
    except _PARSE_ERRORS as exc:
        raise _parse_error(f"{api_version} {kind}", env.raw, exc) from None
    return meta, [wrap(api_version, item_kind, item) for item in shell.items]


def decode_watch_event(frame: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> tuple[str, bytes]:
    """One protobuf watch frame (a meta/v1 WatchEvent) -> (type, the object's bytes).

    The APIServer's watch stream frames the bare WatchEvent message (its
    stream serializer writes no envelope); a ``k8s\\0`` envelope around it is
    accepted too. The object's bytes are what the APIServer embedded: a
    ``k8s\\0`` envelope for protobuf streams (JSON bytes if it embedded
    JSON), ready for :func:`decode`/:func:`peek`.

    A bare frame's two fields, ``type`` (1) and ``object`` (2, a
    RawExtension whose field 1 is the object), are read at the wire level:
    parsing the frame as a message and then the object again was a third of
    the cost of a protobuf watch event. Anything unusual takes the full parse,
    which explains errors.
    """
    frame = _check(frame, max_size)
    if not frame.startswith(MAGIC):
        quick = _split_bare_event(frame)
        if quick is not None:
            return quick
        raw = frame
    else:
        env = _envelope(frame)
        tm = env.typeMeta
        if tm.kind not in ("", "WatchEvent"):
            raise DecodeError(f"{tm.apiVersion} {tm.kind}: not a WatchEvent")
        raw = env.raw
    try:
        event = _WatchEvent.FromString(raw)
    except _PARSE_ERRORS as exc:
        raise _parse_error("WatchEvent", raw, exc) from None
    if not event.type:
        raise DecodeError("WatchEvent without a type")
    return event.type, event.object.raw


def _split_bare_event(frame: bytes) -> tuple[str, bytes] | None:
    """(type, object) read straight off a bare WatchEvent's wire bytes, or None when unusual."""
    try:
        fields = length_delimited(frame)
        if len(fields) != 2 or fields[0].number != 1 or fields[1].number != 2:
            return None
        type_ = frame[fields[0].start:fields[0].end].decode("utf-8")
        ext = frame[fields[1].start:fields[1].end]
        inner = length_delimited(ext)
    except (ValueError, UnicodeDecodeError):
        return None
    if not type_ or any(f.number != 1 for f in inner):
        return None
    return type_, (ext[inner[-1].start:inner[-1].end] if inner else b"")
