"""The safety stage: redact secrets before anything else sees an object.

What is redacted, by kind (matched on the kind's name alone, in any group and
version, so an old ``extensions/v1beta1`` Deployment is scrubbed like an
``apps/v1`` one, and a look-alike custom kind is scrubbed rather than trusted):

* the pod spec of ``Pod`` (``spec``), ``PodTemplate`` (``template.spec``), the
  workload kinds in :data:`POD_SPEC_PATHS` (``spec.template.spec``) and
  ``CronJob`` (``spec.jobTemplate.spec.template.spec``): in it, every
  ``env[].value`` of ``containers``, ``initContainers`` and
  ``ephemeralContainers``;
* the ``kubectl.kubernetes.io/last-applied-configuration`` annotation of every
  object: ``kubectl apply`` keeps the whole object there in clear, so the JSON
  inside is scrubbed with these same rules (by the kind it names); when it does
  not parse as a JSON object it is replaced whole;
* ``Secret``: dropped unless the runner allows secrets; then every
  ``stringData`` value becomes :data:`REDACTED` and every ``data`` value
  becomes :data:`REDACTED_DATA`, the base64 form of the bytes ``REDACTED``.
  ``data`` holds bytes (base64 in JSON, raw in protobuf), so the protobuf and
  the dict forms of a redacted Secret decode to the same object and it still
  validates.

Names stay; only values go. Empty values stay empty: there is nothing to hide,
and protobuf stores an empty ``value`` that JSON omits, so redacting it would
make the two forms disagree.

The stage scrubs in whatever form the object is in: a dict when one is already
built (or the value is JSON), else the protobuf bytes through
``tattler_etcd.codec.parse`` + ``redact_parsed``, which walk the paths without
building the dict (one parse, one serialization, only when something changed).

It fails closed. An object whose shape does not match (a ``containers`` that is
not a list, a value that does not decode, a kind it cannot read, an entry whose
kind is not its object's) does not pass:
the drop is counted under ``safety.dropped.unsafe`` and logged with the entry's
key, never its body.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Final

import trio

from tattler_etcd import codec
from tattler_etcd.data import Entry
from tattler_etcd.errors import TattlerError, UnsafeObjectError
from tattler_etcd.stats import Counters

__all__ = [
    "CONTAINER_LISTS",
    "LAST_APPLIED",
    "POD_SPEC_PATHS",
    "REDACTED",
    "REDACTED_DATA",
    "SECRET_PATHS",
    "paths_for",
    "run_safety",
    "scrub_dict",
    "scrub_entry",
    "scrub_value",
]

logger = logging.getLogger("tattler_etcd.pipeline.safety")

#: What a redacted string value becomes.
REDACTED: Final = "REDACTED"
#: What a redacted ``Secret.data`` value becomes in JSON: base64 of ``b"REDACTED"``.
REDACTED_DATA: Final = "UkVEQUNURUQ="
_REDACTED_BYTES: Final = b"REDACTED"

#: The annotation ``kubectl apply`` keeps the whole last applied object in.
LAST_APPLIED_ANNOTATION: Final = "kubectl.kubernetes.io/last-applied-configuration"
#: Its path (an annotation key holds dots and a slash, hence tuples, not dotted strings).
LAST_APPLIED: Final = ("metadata", "annotations", LAST_APPLIED_ANNOTATION)
_LAST_APPLIED_BYTES: Final = LAST_APPLIED_ANNOTATION.encode()

#: Where the pod spec is, per kind.
POD_SPEC_PATHS: Final[Mapping[str, tuple[str, ...]]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

#: The container lists of a pod spec whose ``env[].value`` are redacted.
CONTAINER_LISTS: Final = ("containers", "initContainers", "ephemeralContainers")

#: The Secret paths redacted when secrets are allowed through.
SECRET_PATHS: Final = (("data", "*"), ("stringData", "*"))

_SECRET_KIND: Final = "Secret"


def paths_for(kind: str) -> tuple[tuple[str, ...], ...]:
    """The value paths redacted in an object of ``kind`` (JSON names, ``"*"`` = every element).

    The last-applied annotation is not among them: its value is not replaced
    but scrubbed as JSON (see the module docstring).
    """
    paths: list[tuple[str, ...]] = []
    spec = POD_SPEC_PATHS.get(kind)
    if spec is not None:
        paths.extend((*spec, c, "*", "env", "*", "value") for c in CONTAINER_LISTS)
    if kind == _SECRET_KIND:
        paths.extend(SECRET_PATHS)
    return tuple(paths)


class _Unsafe(Exception):
    """The object's shape is not what the rules expect; carries where (a path, never a value)."""


def scrub_dict(obj: dict[str, Any], *, kind: str | None = None) -> int:
    """Redact, in place, a JSON-shaped object; return how many values were redacted.

    ``kind`` defaults to ``obj["kind"]``. A list kind (``PodList``...) has each
    of its ``items`` scrubbed as the item kind; this is what recordings of
    list responses need.

    Raises:
        UnsafeObjectError: the object does not have the shape the rules
            expect, so it cannot be known to be clean. The message names the
            path, never a value.
    """
    if not isinstance(obj, dict):
        raise UnsafeObjectError(f"not a JSON object but {type(obj).__name__}")
    if kind is None:
        kind = obj.get("kind")
        if not isinstance(kind, str):
            raise UnsafeObjectError("no kind")
    try:
        return _scrub_object(obj, kind, 0)
    except _Unsafe as exc:
        raise UnsafeObjectError(f"unexpected shape at {exc}") from None


def _scrub_object(obj: dict[str, Any], kind: str, depth: int) -> int:
    n = 0
    spec_path = POD_SPEC_PATHS.get(kind)
    if spec_path is not None:
        node: Any = obj
        for i, seg in enumerate(spec_path):
            node = node.get(seg)
            if node is None:
                break
            if type(node) is not dict:
                raise _Unsafe(".".join(spec_path[: i + 1]))
        else:
            n += _scrub_pod_spec(node)
    elif kind == _SECRET_KIND:
        for field, replacement in (("data", REDACTED_DATA), ("stringData", REDACTED)):
            values = obj.get(field)
            if values is None:
                continue
            if type(values) is not dict:
                raise _Unsafe(field)
            for k, v in values.items():
                if v is not None and v != "":
                    values[k] = replacement
                    n += 1
    elif kind.endswith("List") and "items" in obj:
        items = obj["items"]
        if items is not None:
            if type(items) is not list:
                raise _Unsafe("items")
            item_kind = kind[:-4]
            for i, item in enumerate(items):
                if type(item) is not dict:
                    raise _Unsafe(f"items[{i}]")
                ik = item.get("kind")
                n += _scrub_object(item, ik if isinstance(ik, str) and ik else item_kind, depth)
    meta = obj.get("metadata")
    if meta is not None:
        if type(meta) is not dict:
            raise _Unsafe("metadata")
        annotations = meta.get("annotations")
        if annotations is not None:
            if type(annotations) is not dict:
                raise _Unsafe("metadata.annotations")
            applied = annotations.get(LAST_APPLIED_ANNOTATION)
            if applied is not None:
                new, changed = _scrub_last_applied(applied, depth)
                if changed:
                    # Counted as one value, as the codec counts it on protobuf objects.
                    annotations[LAST_APPLIED_ANNOTATION] = new
                    n += 1
    return n


def _scrub_pod_spec(spec: dict[str, Any]) -> int:
    # Hand-written loops rather than a generic path walk: this runs for every
    # Pod, and this way a whole Pod with ten env values scrubs in about 2 us.
    n = 0
    for field in CONTAINER_LISTS:
        containers = spec.get(field)
        if containers is None:
            continue
        if type(containers) is not list:
            raise _Unsafe(field)
        for c in containers:
            if type(c) is not dict:
                if c is None:
                    continue
                raise _Unsafe(f"{field}[]")
            env = c.get("env")
            if env is None:
                continue
            if type(env) is not list:
                raise _Unsafe(f"{field}[].env")
            for var in env:
                if type(var) is dict:
                    # Truthiness: an empty value (or a falsy non-string) has nothing to hide.
                    if var.get("value"):
                        var["value"] = REDACTED
                        n += 1
                elif var is not None:
                    raise _Unsafe(f"{field}[].env[]")
    return n


#: How deep last-applied annotations may nest inside each other's JSON.
_MAX_DEPTH: Final = 4


def _scrub_last_applied(text: Any, depth: int) -> tuple[Any, int]:
    """The annotation's text scrubbed, and how many values changed (0: leave it)."""
    if not isinstance(text, str) or depth >= _MAX_DEPTH:
        return REDACTED, 1
    if text == "":
        return text, 0
    try:
        doc = json.loads(text)
    except ValueError:
        return REDACTED, 1
    if type(doc) is not dict:
        return REDACTED, 1
    kind = doc.get("kind")
    try:
        n = _scrub_object(doc, kind if isinstance(kind, str) else "", depth + 1)
    except _Unsafe:
        return REDACTED, 1
    if n == 0:
        return text, 0
    # kubectl writes compact JSON with a trailing newline; keep that form.
    out = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return (out + "\n" if text.endswith("\n") else out), n


def _redact_leaf(v: Any) -> Any:
    if type(v) is str:  # the common case first: this runs for every env value
        return REDACTED if v else v
    if isinstance(v, (bytes, bytearray)):
        return _REDACTED_BYTES if v else v
    if isinstance(v, str):
        return REDACTED if v else v
    return v


def _redact_applied_leaf(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        new, changed = _scrub_last_applied(bytes(v).decode("utf-8", "replace"), 0)
        return new.encode("utf-8") if changed else v
    new, changed = _scrub_last_applied(v, 0)
    return new if changed else v


#: kind -> its paths (kinds come from the data, hence the bound).
_paths_cache: dict[str, tuple[tuple[str, ...], ...]] = {}
_LAST_APPLIED_PATHS: Final = (LAST_APPLIED,)
#: Above this many bytes, a parsed object's annotation is looked up rather than scanned for.
_SCAN_LIMIT: Final = 4096
_MAGIC: Final = codec.MAGIC  # what every protobuf value starts with


def _scrub_parsed(parsed: Any, kind: str, value: bytes) -> int:
    """Redact a parsed protobuf object (``value``: its bytes) in place; how many values changed."""
    paths = _paths_cache.get(kind)
    if paths is None:
        paths = paths_for(kind)
        if len(_paths_cache) < 1024:
            _paths_cache[kind] = paths
    n = codec.redact_parsed(parsed, paths, _redact_leaf) if paths else 0
    # The annotation needs its own pass (its leaf is scrubbed as JSON, not
    # replaced). A map key is stored verbatim, so when its name is not in the
    # bytes the annotation is not there: the scan (~0.2 us for 400 bytes,
    # ~0.5 us for 3 KB) spares the pass, and for a kind without paths the
    # object's parse too. For a large object already parsed the pass (~0.5 us,
    # a map lookup) costs less than the scan.
    if (paths and len(value) > _SCAN_LIMIT) or _LAST_APPLIED_BYTES in value:
        n += codec.redact_parsed(parsed, _LAST_APPLIED_PATHS, _redact_applied_leaf)
    return n


def scrub_value(value: bytes, kind: str) -> tuple[bytes, int]:
    """Redact protobuf ``value`` (an object of ``kind``) without building its dict.

    Returns the new bytes and how many values changed (the bytes are returned
    unchanged when 0).

    Raises:
        UnsafeObjectError: the codec cannot walk the value; chained to its error.
    """
    try:
        parsed = codec.parse(value)
        n = _scrub_parsed(parsed, kind, value)
        if n:
            value = codec.to_bytes(parsed)
    except TattlerError as exc:
        raise UnsafeObjectError(f"cannot walk the value: {type(exc).__name__}: {str(exc)[:200]}") from exc
    return value, n


def scrub_entry(entry: Entry, *, allow_secrets: bool = False) -> int | None:
    """Redact ``entry`` in place, in whatever form it holds; how many values changed.

    Returns None when the entry must not pass at all (a Secret while secrets
    are not allowed).

    A protobuf entry is parsed once (``codec.parse``); both passes (the
    kind's paths, the last-applied annotation) edit that parsed object, and it
    is serialized once, only when something changed. The parsed object is not
    kept in the entry: entries holding one (several times the size of the
    bytes) measured slower end to end wherever entries are kept, a reader's
    index or a batch (docs/performance.md).

    Raises:
        UnsafeObjectError: the entry cannot be inspected; it must not pass.
    """
    kind = entry.kind
    if not kind:
        raise UnsafeObjectError("no kind")
    if kind == _SECRET_KIND and not allow_secrets:
        return None
    if not entry.has_raw():
        value = entry.value
        if value is not None:
            if value[:4] == _MAGIC or not codec.is_json(value):
                try:
                    parsed = codec.parse(value)
                except TattlerError as exc:
                    raise UnsafeObjectError(f"cannot decode: {type(exc).__name__}: {str(exc)[:200]}") from exc
                # The rules follow the kind, so the kind the bytes carry must be the
                # entry's: a mismatch (a reader bug) could let a Secret or a Pod through
                # under another name.
                if parsed.kind != kind:
                    raise UnsafeObjectError(f"the value holds a {parsed.kind!r}, the entry says {kind!r}")
                try:
                    n = _scrub_parsed(parsed, kind, value)
                    new = codec.to_bytes(parsed) if n else value
                except TattlerError as exc:
                    raise UnsafeObjectError(
                        f"cannot walk the value: {type(exc).__name__}: {str(exc)[:200]}") from exc
                if n:
                    entry.replace_value(new)  # drops the clear bytes (and any form built from them)
                return n
        try:
            entry.raw  # noqa: B018 - builds the dict (JSON values, or an entry made without one)
        except TattlerError as exc:
            raise UnsafeObjectError(f"cannot decode: {type(exc).__name__}: {str(exc)[:200]}") from exc
    raw = entry.raw
    if type(raw) is not dict:
        raise UnsafeObjectError(f"not a JSON object but {type(raw).__name__}")
    raw_kind = raw.get("kind")
    if raw_kind is not None and raw_kind != kind:
        raise UnsafeObjectError(f"the object is a {raw_kind!r}, the entry says {kind!r}")
    try:
        n = _scrub_object(raw, kind, 0)
    except _Unsafe as exc:
        raise UnsafeObjectError(f"unexpected shape at {exc}") from None
    if n:
        # Drops the stored bytes (they still hold the clear values) and any model built from them.
        entry.replace_raw(raw)
    return n


async def run_safety(
    receive: trio.MemoryReceiveChannel[list[Entry]],
    send: trio.MemorySendChannel[list[Entry]],
    *,
    counters: Counters,
    allow_secrets: bool = False,
) -> None:
    """The stage: scrub every entry of every chunk; closes ``send`` when ``receive`` ends.

    Counters: ``safety.in``, ``safety.out``, ``safety.redacted`` (values),
    ``safety.dropped.secret``, ``safety.dropped.unsafe``.
    """
    async with receive, send:
        async for chunk in receive:
            out: list[Entry] = []
            redacted = 0
            for entry in chunk:
                try:
                    n = scrub_entry(entry, allow_secrets=allow_secrets)
                except Exception as exc:  # noqa: BLE001 - fail closed: anything unexpected drops the entry
                    counters.add("safety.dropped.unsafe")
                    reason = str(exc) if isinstance(exc, TattlerError) else type(exc).__name__
                    logger.warning("safety: dropped %s: cannot inspect it (%s)", entry.key, reason)
                    continue
                if n is None:
                    counters.add("safety.dropped.secret")
                    logger.debug("safety: dropped %s: secrets are not allowed", entry.key)
                    continue
                redacted += n
                out.append(entry)
            counters.add("safety.in", len(chunk))
            if redacted:
                counters.add("safety.redacted", redacted)
            if out:
                counters.add("safety.out", len(out))
                await send.send(out)
        # Logged before the channels close, so the log shows the order stages end in.
        logger.debug("stage safety closed")
