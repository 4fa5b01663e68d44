"""The upb message classes of the schema: its messages as descriptors in one pool.

Imported by ``_schema`` when the schema loads (first use), not with the codec:
the protobuf descriptor modules take ~15 ms to import, which a program that
never meets a protobuf value need not pay.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

if TYPE_CHECKING:
    from tattler_etcd.codec._schema import Message

__all__ = ["build_pool", "message_class"]

_SCALAR_TYPES = {
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
    "uint32": descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
    "uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
    "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    "float": descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
}
_OPT = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
_REP = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
_MSG = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE


def build_pool(
    messages: Mapping[str, Message], own_messages: Mapping[str, list[tuple[int, str, str, str]]],
    own_package: str, own_deps: set[str], syntax: str = "proto3",
) -> Any:
    """One pool of every message.

    Declared as ``proto3`` with every singular field ``optional`` (so
    presence is tracked exactly as in proto2) and repeated numbers
    unpacked (as Go writes them): that makes upb check UTF-8 while parsing,
    so a string is always ``str``. Go accepts invalid UTF-8; such values
    are repaired before parsing (see ``_utf8._repair_wire``).
    """
    pool = descriptor_pool.DescriptorPool()
    by_package: dict[str, list[str]] = {}
    for name in messages:
        by_package.setdefault(name.rsplit(".", 1)[0], []).append(name)
    deps: dict[str, set[str]] = {}
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for package, names in by_package.items():
        fdp = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax=syntax)
        need: set[str] = set()
        for name in names:
            msg = messages[name]
            dp = fdp.message_type.add(name=name.rsplit(".", 1)[1])
            for f in msg.fields:
                if f.type not in _SCALAR_TYPES:
                    need.add(f.type.rsplit(".", 1)[0])
                _add_field(dp, f.number, f.proto_name, f.type, f.label)
        need.discard(package)
        deps[package] = need
        files[package] = fdp
    own = descriptor_pb2.FileDescriptorProto(name="tattler_codec.proto", package=own_package, syntax=syntax)
    for name, fields in own_messages.items():
        dp = own.message_type.add(name=name)
        for number, fname, ftype, label in fields:
            _add_field(dp, number, fname, ftype, label)
    files[own_package] = own
    deps[own_package] = set(own_deps)
    added: set[str] = set()

    def add(package: str, stack: tuple[str, ...] = ()) -> None:
        if package in added:
            return
        if package in stack:
            raise RuntimeError(f"schema: import cycle through {package}")
        for dep in sorted(deps[package]):
            add(dep, stack + (package,))
        files[package].dependency.extend(f"{d}.proto" for d in sorted(deps[package]))
        pool.Add(files[package])
        added.add(package)

    if syntax == "proto3":
        for fdp in files.values():
            for dp in fdp.message_type:
                _proto3_presence(dp)
    for package in sorted(files):
        add(package)
    return pool


def _add_field(dp: descriptor_pb2.DescriptorProto, number: int, name: str, ftype: str, label: str) -> None:
    if label == "map":
        entry_name = "".join(p[:1].upper() + p[1:] for p in name.split("_")) + "Entry"
        entry = dp.nested_type.add(name=entry_name)
        entry.options.map_entry = True
        entry.field.add(name="key", number=1, label=_OPT, type=_SCALAR_TYPES["string"])
        value = entry.field.add(name="value", number=2, label=_OPT)
        if ftype in _SCALAR_TYPES:
            value.type = _SCALAR_TYPES[ftype]
        else:
            value.type = _MSG
            value.type_name = "." + ftype
        dp.field.add(name=name, number=number, label=_REP, type=_MSG, type_name=f".{entry_name}")
        # Nested type names resolve relative to the message.
        dp.field[-1].type_name = f"{entry_name}"
        return
    fd = dp.field.add(name=name, number=number, label=_REP if label == "rep" else _OPT)
    if ftype in _SCALAR_TYPES:
        fd.type = _SCALAR_TYPES[ftype]
    else:
        fd.type = _MSG
        fd.type_name = "." + ftype


def message_class(pool: Any, name: str) -> type[Any]:
    """The upb class of a full message name in ``pool`` (checks UTF-8 while parsing)."""
    cls: type[Any] = message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
    return cls


_NUMERIC = {
    descriptor_pb2.FieldDescriptorProto.TYPE_INT32, descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL, descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT64, descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
}


def _proto3_presence(dp: descriptor_pb2.DescriptorProto) -> None:
    """proto2 semantics in proto3 syntax: explicit presence, unpacked repeated numbers."""
    for fd in dp.field:
        if fd.label == _REP:
            if fd.type in _NUMERIC:
                fd.options.packed = False
            continue
        if fd.type == _MSG:
            continue  # messages always track presence
        fd.proto3_optional = True
        fd.oneof_index = len(dp.oneof_decl)
        dp.oneof_decl.add(name=f"_{fd.name}")
    for nested in dp.nested_type:
        if not nested.options.map_entry:
            _proto3_presence(nested)
