"""The one data model every reader produces and every processor consumes.

An :class:`Entry` is one change to one Kubernetes object. Anything with
``metadata.uid`` can be an Entry: kinds and sources are plain strings and enum
values, never a central switch, so a new kind or a custom resource needs no
edit here.

Making an Entry must be cheap because a reader may hand over 200,000 of them
during its first list. A reader gives either the JSON-shaped dict it already
has (:meth:`Entry.from_dict`) or the undecoded bytes from etcd plus the few
fields it knows (:meth:`Entry.from_value`); the dict (:attr:`Entry.raw`) and
the kubernetes client model (:attr:`Entry.object`) are built only on first
access and then kept.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from tattler_etcd import codec
from tattler_etcd.codec import json_bytes as _json_bytes
from tattler_etcd.jsonout import dumps as _dumps
from tattler_etcd.models import to_model

__all__ = ["ChangeType", "Entry", "SourceType"]


class ChangeType(enum.Enum):
    """What happened to the object.

    Attributes:
        ADD: the object appeared (first list, or created while watching).
        UPDATE: the object changed.
        DELETE: the object is gone; the entry carries its last state.
        SNAPSHOT: the object was re-confirmed by a relist (periodic, or after
            the reader lost its place in history).
    """

    ADD = "add"
    UPDATE = "update"
    DELETE = "delete"
    SNAPSHOT = "snapshot"


class SourceType(enum.Enum):
    """Where an entry was read from.

    Attributes:
        ETCD: straight from etcd, decoded from the APIServer's storage format.
        APISERVER: through the APIServer's list and watch.
    """

    ETCD = "etcd"
    APISERVER = "apiserver"


class Entry:
    """One change to one Kubernetes object.

    The identity fields (``uid``, ``api_version``, ``kind``, ``namespace``,
    ``name``, ``resource_version``) are always set. The object is held in
    whichever form the reader had: ``value`` (bytes as stored in etcd,
    protobuf or JSON) and/or ``raw`` (the JSON-shaped dict). ``key`` says
    where the entry came from (the etcd key, or ``resource/namespace/name``)
    and is what logs and errors name, never the body.
    """

    __slots__ = (
        "_line",
        "_object",
        "_object_json",
        "_raw",
        "_value",
        "api_version",
        "change",
        "key",
        "kind",
        "name",
        "namespace",
        "resource_version",
        "source",
        "uid",
    )

    def __init__(
        self,
        *,
        change: ChangeType,
        source: SourceType,
        uid: str,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        resource_version: str,
        key: str = "",
        raw: dict[str, Any] | None = None,
        value: bytes | None = None,
    ) -> None:
        if raw is None and value is None:
            raise ValueError("an Entry needs raw or value")
        self.change = change
        self.source = source
        self.uid = uid
        self.api_version = api_version
        self.kind = kind
        self.namespace = namespace or None
        self.name = name
        self.resource_version = resource_version
        self.key = key or _default_key(kind, namespace, name)
        self._raw = raw
        self._value = value
        self._object: Any = None
        #: The object's JSON, kept while no dict is (see :meth:`to_json_bytes`).
        self._object_json: bytes | None = None
        #: (head, line) of the last :meth:`to_json_bytes` written from the bytes by C.
        self._line: tuple[dict[str, Any], bytes] | None = None

    @classmethod
    def from_dict(
        cls,
        raw: dict[str, Any],
        *,
        change: ChangeType,
        source: SourceType,
        key: str = "",
        resource_version: str | None = None,
    ) -> Entry:
        """An Entry for a JSON-shaped object, as the APIServer serves it.

        ``resource_version`` overrides ``metadata.resourceVersion`` (etcd
        stores objects without one; the APIServer fills in the key's
        mod_revision when it serves them, and so do we).
        """
        meta = raw.get("metadata")
        if not isinstance(meta, dict):
            meta = {}
        if resource_version is not None:
            meta["resourceVersion"] = resource_version
            raw["metadata"] = meta
        return cls(
            change=change,
            source=source,
            uid=str(meta.get("uid") or ""),
            api_version=str(raw.get("apiVersion") or ""),
            kind=str(raw.get("kind") or ""),
            namespace=meta.get("namespace") or None,
            name=str(meta.get("name") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
            key=key,
            raw=raw,
        )

    @classmethod
    def from_value(
        cls,
        value: bytes,
        *,
        change: ChangeType,
        source: SourceType,
        key: str = "",
        resource_version: str | None = None,
    ) -> Entry:
        """An Entry for bytes as stored in etcd, reading only the identity fields.

        Protobuf values stay undecoded until somebody asks for :attr:`raw`;
        JSON values (custom resources) are parsed now, since reading their
        uid costs the same as reading all of them.

        Raises:
            tattler_etcd.errors.DecodeError: the bytes are not an object.
        """
        if value[:4] != codec.MAGIC and codec.is_json(value):
            entry = cls.from_dict(
                codec.decode(value), change=change, source=source, key=key,
                resource_version=resource_version,
            )
            return entry
        meta = codec.peek(value)
        return cls(
            change=change,
            source=source,
            uid=meta.uid,
            api_version=meta.api_version,
            kind=meta.kind,
            namespace=meta.namespace,
            name=meta.name,
            resource_version=resource_version if resource_version is not None else meta.resource_version,
            key=key,
            value=value,
        )

    @property
    def value(self) -> bytes | None:
        """The bytes as stored, when the entry was made from them and not replaced by a dict."""
        return self._value

    @property
    def raw(self) -> dict[str, Any]:
        """The object as a JSON-shaped dict, exactly as the APIServer serves it (built once)."""
        if self._raw is None:
            self._raw = self._decode()
            self._object_json = None  # the dict may now be edited in place
            self._line = None
        return self._raw

    def _decode(self) -> dict[str, Any]:
        assert self._value is not None
        raw: dict[str, Any] = codec.decode(self._value)
        if self.resource_version:
            meta = raw.get("metadata")
            if isinstance(meta, dict):
                meta["resourceVersion"] = self.resource_version
        return raw

    @property
    def object(self) -> Any:
        """The kubernetes client model (``V1Pod``, ``V1Node``...), built once on first access.

        Kinds the kubernetes package has no model for come back as the dict.
        The model is a convenience; :attr:`raw` is the faithful form (a model
        round trip re-formats timestamps and drops nulls).
        """
        if self._object is None:
            self._object = to_model(self.raw)
        return self._object

    def has_raw(self) -> bool:
        """True when the dict is already built (no decoding cost to read it)."""
        return self._raw is not None

    def replace_value(self, value: bytes) -> None:
        """Swap the stored bytes (safety re-encodes redacted objects); drops cached forms."""
        self._value = value
        self._raw = None
        self._object = None
        self._object_json = None
        self._line = None

    def replace_raw(self, raw: dict[str, Any]) -> None:
        """Swap the dict (safety, preprocessors); the bytes no longer match, so they go."""
        self._raw = raw
        self._value = None
        self._object = None
        self._object_json = None
        self._line = None

    def _json_head(self) -> dict[str, Any]:
        """The JSON form's keys before ``object``, in their order."""
        return {
            "change": self.change.value,
            "source": self.source.value,
            "uid": self.uid,
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "resourceVersion": self.resource_version,
        }

    def to_json_dict(self) -> dict[str, Any]:
        """The one JSON form every consumer and the CLI share (lower-case change/source)."""
        doc = self._json_head()
        doc["object"] = self.raw
        return doc

    def to_json(self) -> str:
        """:meth:`to_json_dict` as one compact line of JSON (no newline)."""
        return self.to_json_bytes().decode("utf-8")

    def to_json_bytes(self) -> bytes:
        """:meth:`to_json_dict` as one compact line of JSON, UTF-8 (no newline).

        What processors that write or send entries should use: the text of
        ``json.dumps(entry.to_json_dict(), separators=(",", ":"),
        ensure_ascii=False)`` (see :mod:`tattler_etcd.jsonout`), ~5x faster,
        and without keeping the decoded dict: an entry that holds only bytes
        decodes them, writes the JSON and drops the dict, so a batch of
        written entries does not keep a thousand decoded objects alive (the
        garbage collector walks every one of them, again and again). The
        object's JSON is kept instead (a few KB of bytes, which the collector
        skips), so a second processor writing the same entry does not decode
        it again.

        An entry that holds only protobuf bytes is written by C straight from
        them (:func:`tattler_etcd.codec.json_bytes`: the same text, no dict
        at all, ~2x faster than decode + orjson); the line is kept instead,
        and written again only when the identity fields changed.

        Raises:
            tattler_etcd.errors.DecodeError: the stored bytes are not an object.
        """
        head = self._json_head()
        body: bytes | None
        if self._raw is not None:
            body = _dumps(self._raw)
        else:
            line = self._line
            if line is not None and line[0] == head:
                return line[1]
            assert self._value is not None
            fast = _json_bytes(self._value, self.resource_version, head)
            if fast is not None:
                self._line = (head, fast)
                return fast
            body = self._object_json
            if body is None:
                body = self._object_json = _dumps(self._decode())
        return b"".join((_dumps(head)[:-1], b',"object":', body, b"}"))

    @classmethod
    def from_json_dict(cls, doc: Mapping[str, Any]) -> Entry:
        """Read back the JSON form (for tests and tools that consume JSON lines)."""
        return cls(
            change=ChangeType(doc["change"]),
            source=SourceType(doc["source"]),
            uid=doc["uid"],
            api_version=doc["apiVersion"],
            kind=doc["kind"],
            namespace=doc.get("namespace"),
            name=doc["name"],
            resource_version=doc["resourceVersion"],
            raw=dict(doc["object"]),
        )

    def __repr__(self) -> str:
        # Identity only: a repr ends up in logs, and logs never carry bodies.
        return (
            f"Entry({self.change.value} {self.source.value} {self.kind} "
            f"{self.key} uid={self.uid} rv={self.resource_version})"
        )


def _default_key(kind: str, namespace: str | None, name: str) -> str:
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"
