"""The generated schema, loaded once, and the protobuf message classes built from it.

Only this module reads ``_generated/schema.json`` (written by
``tools/gen_schema.py``). The upb message classes are built from that data
(``FileDescriptorProto`` -> ``DescriptorPool`` -> classes, about 30 ms for
every message), so no protoc output is shipped or needed.

The schema loads lazily: :data:`SCHEMA` is made at import but reads the file
and builds the pool on the first access to any of its data (about 40-70 ms
with the protobuf imports), so importing the codec costs little and every
module may import it at the top; a program that never meets a protobuf value
(a JSON-only APIServer reader, ``tattler-etcd --help``) never pays for it.

A few messages of our own live in the package ``tattler.codec``: narrow views
used for cheap partial reads (``peek``) and for splitting lists without
decoding their items. They are wire-compatible with the real messages: a
length-delimited field can be declared as bytes or as a message.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

__all__ = ["META_PACKAGE", "SCHEMA", "Field", "LazyClasses", "Message", "Schema"]

#: The scalar type names of the schema; any other type is a full message name.
_SCALAR_NAMES = frozenset(("string", "int32", "int64", "bool", "bytes", "uint32", "uint64", "double", "float"))

#: Our own narrow views (package ``tattler.codec``): number -> (name, type, label).
_OWN_PACKAGE = "tattler.codec"
_META = "k8s.io.apimachinery.pkg.apis.meta.v1"
#: The package of meta/v1 (ObjectMeta, WatchEvent...): a constant, so naming its
#: messages does not load the schema (the schema's ``meta_package`` must match).
META_PACKAGE = _META
_OWN_MESSAGES: dict[str, list[tuple[int, str, str, str]]] = {
    # ObjectMeta reduced to the identity fields.
    "PeekMeta": [(1, "name", "string", "opt"), (3, "namespace", "string", "opt"),
                 (5, "uid", "string", "opt"), (6, "resourceVersion", "string", "opt")],
    "PeekObject": [(1, "metadata", f"{_OWN_PACKAGE}.PeekMeta", "opt")],
    "PeekTypeMeta": [(1, "apiVersion", "string", "opt"), (2, "kind", "string", "opt")],
    # runtime.Unknown with raw declared as the object itself.
    "PeekEnvelope": [(1, "typeMeta", f"{_OWN_PACKAGE}.PeekTypeMeta", "opt"),
                     (2, "raw", f"{_OWN_PACKAGE}.PeekObject", "opt")],
    # Any XList: its ListMeta and the items left as bytes.
    "ListShell": [(1, "metadata", f"{_META}.ListMeta", "opt"), (2, "items", "bytes", "rep")],
}


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a message, with the Go facts that decide its JSON shape."""

    number: int
    proto_name: str
    json_name: str
    type: str  # a scalar name or a full message name
    label: str  # "opt", "rep" or "map"
    omitempty: bool
    omitzero: bool
    pointer: bool
    inline: bool
    removed: bool = False  # absent from the newest release: never defaulted

    @property
    def is_message(self) -> bool:
        return self.type not in _SCALAR_NAMES


@dataclass(frozen=True, slots=True)
class Message:
    """One message: its special tag (``time``, ``quantity``... or None) and its fields."""

    name: str
    special: str | None
    fields: tuple[Field, ...]


class Schema:
    """Messages, group-versions and the upb classes, built once: from ``data``, or by ``load`` on first use.

    With ``load``, nothing is read until an attribute is first looked up: the
    data attributes are missing until then, so that lookup reaches
    ``__getattr__``, which builds them all once (under a lock: off-loop
    workers may race to it); after that it is never called again, so the
    lazy load costs nothing on the hot paths.
    """

    sources: list[str]
    meta_package: str
    groups: dict[str, str]
    messages: dict[str, Message]
    pool: Any
    _new_class: Callable[[Any, str], type[Any]]

    def __init__(self, data: dict[str, Any] | None = None, *, load: Callable[[], dict[str, Any]] | None = None) -> None:
        if data is not None:
            self._build(data)
        else:
            if load is None:
                raise TypeError("Schema needs data or load")
            self._pending: tuple[Callable[[], dict[str, Any]], threading.Lock] | None = (load, threading.Lock())

    if not TYPE_CHECKING:  # for mypy every attribute is declared above; unknown names stay errors

        def __getattr__(self, name: str) -> Any:
            # Reached only for an attribute not set yet: the first use of a lazy schema.
            pending = self.__dict__.get("_pending")
            if pending is None or name.startswith("__"):
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            load, lock = pending
            with lock:
                if self.__dict__.get("_pending") is not None:
                    # Built apart, then every attribute set at once: a reader on
                    # another thread sees each one complete or not at all.
                    self.__dict__.update(Schema(load()).__dict__)
                    self._pending = None
            return object.__getattribute__(self, name)

    def _build(self, data: dict[str, Any]) -> None:
        if data["meta_package"] != META_PACKAGE:
            raise RuntimeError(f"schema: meta package {data['meta_package']!r}, expected {META_PACKAGE!r}")
        self.sources = list(data["sources"])
        self.meta_package = data["meta_package"]
        self.groups = dict(data["groups"])
        self.messages = {}
        for name, msg in data["messages"].items():
            fields = tuple(
                Field(
                    number=f[0], proto_name=f[1], json_name=f[2], type=f[3], label=f[4],
                    omitempty="o" in f[5], omitzero="z" in f[5], pointer="p" in f[5], inline="i" in f[5],
                    removed="r" in f[5],
                )
                for f in msg["fields"]
            )
            self.messages[name] = Message(name=name, special=msg["special"], fields=fields)
        # Here, not at the top: the protobuf descriptor modules (~15 ms to import)
        # load with the schema, not with the codec.
        from tattler_etcd.codec import _pool

        self.pool = _pool.build_pool(self.messages, _OWN_MESSAGES, _OWN_PACKAGE, {_META})
        self._new_class = _pool.message_class
        self._classes: dict[str, type[Any]] = {}

        self._kinds: dict[tuple[str, str], str | None] = {}

    def message_class(self, name: str) -> type[Any]:
        """The upb class for a full message name (built on first use); checks UTF-8."""
        cls = self._classes.get(name)
        if cls is None:
            cls = self._new_class(self.pool, name)
            self._classes[name] = cls
        return cls

    def kind_message(self, api_version: str, kind: str) -> str | None:
        """The full message name for an apiVersion/kind, or None when we have no schema for it.

        The meta/v1 kinds (Status, WatchEvent, ListOptions...) are served by
        every group-version, so they are looked up there when the group's own
        package lacks the kind.
        """
        key = (api_version, kind)
        try:
            return self._kinds[key]
        except KeyError:
            pass
        found: str | None = None
        package = self.groups.get(api_version)
        if package is not None and kind:
            for candidate in (f"{package}.{kind}", f"{self.meta_package}.{kind}"):
                if candidate in self.messages:
                    found = candidate
                    break
        self._kinds[key] = found
        return found


class LazyClasses:
    """upb classes of :data:`SCHEMA` as attributes, each looked up on first use (so at import nothing loads).

    ``LazyClasses(Unknown="k8s.io...Unknown").Unknown`` is the class; after
    the first lookup it is a plain instance attribute, as cheap as a global.
    """

    def __init__(self, **names: str) -> None:
        self._names = names

    def __getattr__(self, attr: str) -> Any:
        name = self.__dict__["_names"].get(attr) if "_names" in self.__dict__ else None
        if name is None:
            raise AttributeError(f"no message class {attr!r}")
        cls = SCHEMA.message_class(name)
        setattr(self, attr, cls)
        return cls


def _read() -> dict[str, Any]:
    text = resources.files("tattler_etcd.codec").joinpath("_generated/schema.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


#: The one schema, loaded on first use.
SCHEMA = Schema(load=_read)
