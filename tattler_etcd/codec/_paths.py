"""Where things are in a kind, answered from the schema (JSON-name paths, as :func:`redact` takes them).

Why: the safety rules must follow the schema, not a hand-written list. A kind
added to the schema (or an old one, like ``settings.k8s.io/v1alpha1``
PodPreset, whose ``spec.env`` holds ``EnvVar`` s outside any pod spec) is
covered the day the schema holds it. The rules ask the codec two questions,
and only the codec reads the schema:

- :func:`kind_paths`: every path from a kind to a given field of a given
  message type (``core/v1 EnvVar.value``), or to every field of a special
  type (``RawExtension``), over every group and version that has a kind of
  that name (kinds are matched by name, as the safety stage matches them);
- :func:`leaf_types`: what a path reaches in a kind (``"string"``,
  ``"bytes"``, a special type's name...), to check a user's rule and to know
  whether a leaf is bytes (base64 in JSON) or text.

Paths use JSON names; inline structs are transparent; ``"*"`` is every element
of a list or every value of a map. Recursive types are followed once per path
(a type already on the way is not entered again).
"""

from __future__ import annotations

from functools import cache, lru_cache

from tattler_etcd.codec._schema import SCHEMA, Field

__all__ = ["kind_names", "kind_paths", "leaf_types", "star_labels"]

Path = tuple[str, ...]


def _kind_messages() -> dict[str, tuple[str, ...]]:
    """Kind name -> the message names of that kind in every group-version (objects with ObjectMeta)."""
    object_meta = f"{SCHEMA.meta_package}.ObjectMeta"
    packages = set(SCHEMA.groups.values())
    out: dict[str, list[str]] = {}
    for name, msg in SCHEMA.messages.items():
        package, _, short = name.rpartition(".")
        if package not in packages:
            continue
        if any(f.json_name == "metadata" and f.type == object_meta for f in msg.fields):
            out.setdefault(short, []).append(name)
    return {k: tuple(sorted(v)) for k, v in out.items()}


_kinds: dict[str, tuple[str, ...]] | None = None


def _kinds_by_name() -> dict[str, tuple[str, ...]]:
    # Built on first use: importing the codec loads no schema.
    global _kinds
    if _kinds is None:
        _kinds = _kind_messages()
    return _kinds


@lru_cache(maxsize=1)
def kind_names() -> frozenset[str]:
    """Every kind name the schema holds an object type for (any group, any version)."""
    return frozenset(_kinds_by_name())


def _flat_fields(message: str) -> list[Field]:
    """The fields of a message as JSON sees them: inline structs' fields in their place."""
    out: list[Field] = []
    for f in SCHEMA.messages[message].fields:
        if f.inline and f.is_message:
            out.extend(_flat_fields(f.type))
        else:
            out.append(f)
    return out


def _search(message: str, target_message: str | None, target_field: str | None,
            special: str | None, stack: tuple[str, ...]) -> list[Path]:
    msg = SCHEMA.messages[message]
    if special is not None and msg.special == special:
        return [()]
    if msg.special is not None:
        return []
    found: list[Path] = []
    if message == target_message:
        found.append((target_field,) if target_field else ())
    if message in stack:
        return found
    stack = (*stack, message)
    for f in _flat_fields(message):
        if not f.is_message:
            continue
        prefix: Path = (f.json_name, "*") if f.label in ("rep", "map") else (f.json_name,)
        for sub in _search(f.type, target_message, target_field, special, stack):
            found.append((*prefix, *sub))
    return found


@cache
def _message_paths(message: str, target_message: str | None, target_field: str | None,
                   special: str | None) -> tuple[Path, ...]:
    return tuple(dict.fromkeys(_search(message, target_message, target_field, special, ())))


def kind_paths(kind: str, *, message: str | None = None, field: str | None = None,
               special: str | None = None) -> tuple[Path, ...]:
    """Every path in an object of ``kind`` (any group and version) to ``message``'s ``field``, or to a ``special``.

    ``message`` is a full message name (``k8s.io.api.core.v1.EnvVar``) and
    ``field`` a JSON name in it (``value``); or ``special`` names a special
    type (``rawextension``): paths to every field of that type. A kind the
    schema does not know has no paths. Sorted, without repeats.
    """
    if (message is None) == (special is None):
        raise ValueError("kind_paths: give message (and field) or special")
    names = _kinds_by_name().get(kind, ())
    paths: dict[Path, None] = {}
    for name in names:
        for p in _message_paths(name, message, field, special):
            paths[p] = None
    return tuple(sorted(paths))


def _step(message: str, elem: str) -> list[tuple[Field, bool]]:
    """The field ``elem`` names in ``message`` (JSON name, inline structs read through)."""
    return [(f, False) for f in _flat_fields(message) if f.json_name == elem]


def _reach(type_: str, label: str, path: Path, i: int, out: set[str], stack: int = 0) -> None:
    """What the rest of ``path`` (from ``i``) reaches in a value of ``type_`` held as ``label``."""
    if stack > 64:
        return
    if label in ("rep", "map"):
        if i == len(path):
            msg = SCHEMA.messages.get(type_)
            if msg is None:
                out.add(type_)  # a list or map of strings (each of them), or of numbers
            else:
                out.add(msg.special or "message")
            return
        elem = path[i]
        if label == "rep" and not (elem == "*" or elem.isdigit()):
            return
        _reach(type_, "opt", path, i + 1, out, stack + 1)
        return
    msg = SCHEMA.messages.get(type_)
    if msg is None:  # a scalar
        if i == len(path):
            out.add(type_)
        return
    if msg.special is not None:
        if i == len(path):
            out.add(msg.special)
        elif msg.special == "stringlist" and (path[i] == "*" or path[i].isdigit()) and i + 1 == len(path):
            out.add("string")
        return
    if i == len(path):
        out.add("message")
        return
    for f, _ in _step(type_, path[i]):
        _reach(f.type, f.label, path, i + 1, out, stack + 1)


def leaf_types(kind: str, path: Path) -> frozenset[str]:
    """What ``path`` reaches in an object of ``kind``, over every group and version of it.

    ``"string"`` or ``"bytes"`` for text and bytes fields (also each element
    of a list or map of them), a special type's name (``"quantity"``,
    ``"rawextension"``...), ``"message"`` for a struct, a scalar type's name
    (``"int32"``...) for numbers; empty when it reaches nothing.
    """
    out: set[str] = set()
    for name in _kinds_by_name().get(kind, ()):
        _reach(name, "opt", path, 0, out)
    return frozenset(out)


def star_labels(kind: str, path: Path) -> tuple[str | None, ...]:
    """For each element of ``path``: ``"rep"`` or ``"map"`` where a ``"*"`` steps into a list or a map.

    None elsewhere, and where the versions of ``kind`` disagree or the path
    leaves the schema. The safety rules use it to fail closed on a list that
    is not a list in a dict.
    """
    out: list[str | None] = [None] * len(path)
    seen: list[set[str]] = [set() for _ in path]
    for name in _kinds_by_name().get(kind, ()):
        _labels(name, "opt", path, 0, seen)
    for i, labels in enumerate(seen):
        if len(labels) == 1 and path[i] == "*":
            out[i] = next(iter(labels))
    return tuple(out)


def _labels(type_: str, label: str, path: Path, i: int, seen: list[set[str]]) -> None:
    if i >= len(path):
        return
    if label in ("rep", "map"):
        seen[i].add(label)
        _labels(type_, "opt", path, i + 1, seen)
        return
    msg = SCHEMA.messages.get(type_)
    if msg is None or msg.special is not None:
        return
    for f in _flat_fields(type_):
        if f.json_name == path[i]:
            _labels(f.type, f.label, path, i + 1, seen)
