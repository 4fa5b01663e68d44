"""The codec's public functions: decode, encode, peek, parse, lists, watch events.

The facade: each function checks its input, splits the envelope
(``_envelope``), parses the typed object (``_utf8`` repairs invalid UTF-8)
and converts it (``_convert``, ``_encode``). See ``tattler_etcd.codec``.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from tattler_etcd.codec import _fast
from tattler_etcd.codec._convert import converter
from tattler_etcd.codec._encode import EncodeFailure, fill_message
from tattler_etcd.codec._envelope import _PARSE_ERRORS, MAGIC, _parse_error, wrap

# (re-exported under their old names: codec._redact and tests import them from here)
from tattler_etcd.codec._envelope import _check as _check
from tattler_etcd.codec._envelope import _envelope as _envelope
from tattler_etcd.codec._envelope import _split_envelope as _split_envelope
from tattler_etcd.codec._schema import META_PACKAGE, SCHEMA, LazyClasses
from tattler_etcd.codec._utf8 import _parse_typed as _parse_typed
from tattler_etcd.codec.wire import length_delimited
from tattler_etcd.errors import DecodeError, EncodeError, UnknownKindError

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

#: Values larger than this are refused before parsing. etcd's own default
#: request limit is 1.5 MiB; clusters raise it, rarely past a few tens of MiB.
DEFAULT_MAX_SIZE = 64 * 1024 * 1024

_WATCH_EVENT = f"{META_PACKAGE}.WatchEvent"
_OBJECT_META = f"{META_PACKAGE}.ObjectMeta"
_classes = LazyClasses(WatchEvent=_WATCH_EVENT, PeekObject="tattler.codec.PeekObject", ListShell="tattler.codec.ListShell")


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

    def _edited_raw(self, raw: bytes | None) -> None:
        """Leaves were rewritten in the typed bytes themselves (``_fast.redact_raw``), not parsed."""
        assert raw is not None and self._message is None
        self._raw = raw
        self._source = None

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
    if parsed._message is None and parsed._raw is not None:  # edited in its bytes, never parsed
        return wrap(parsed.api_version, parsed.kind, parsed._raw)
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
            m = _classes.PeekObject.FromString(raw).metadata
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
        shell = _classes.ListShell.FromString(env.raw)
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
        event = _classes.WatchEvent.FromString(raw)
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
