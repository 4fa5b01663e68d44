"""The ``k8s\\0`` envelope: the framing around every protobuf object the APIServer writes.

A stored value is ``k8s\\0`` + a ``runtime.Unknown`` (typeMeta, raw, content
encoding and type); ``raw`` holds the typed object. This module checks a
value before anything parses it (size, type, encryption at rest), splits the
envelope into (apiVersion, kind, raw), writes it (:func:`wrap`), and turns a
failed protobuf parse into the right :class:`~tattler_etcd.errors.DecodeError`
("truncated" or "not protobuf"). What is inside ``raw`` is the facade's
business (``_api``).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError as _PbDecodeError

from tattler_etcd.codec._schema import LazyClasses
from tattler_etcd.codec.wire import CutShort, length_delimited, write_varint
from tattler_etcd.errors import DecodeError, EncryptedValueError, TruncatedValueError, ValueTooLargeError

__all__ = ["MAGIC", "wrap"]

#: The 4 bytes that start every protobuf value the APIServer writes.
MAGIC = b"k8s\x00"

_ENC_PREFIX = b"k8s:enc:"
_UNKNOWN = "k8s.io.apimachinery.pkg.runtime.Unknown"
_classes = LazyClasses(Unknown=_UNKNOWN)
_PARSE_ERRORS = (_PbDecodeError, ValueError, TypeError, UnicodeDecodeError, OverflowError, RecursionError)


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
        return _classes.Unknown.FromString(body)
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
