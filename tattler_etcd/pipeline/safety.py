"""The safety stage: redact secrets before anything else sees an object.

The rules (what is secret in which kind, derived from the schema, plus the
user's) live in :mod:`tattler_etcd.pipeline.redaction`, shared with the
recorder; this module applies them to the entries of a running pipeline.
What is redacted by default: every ``EnvVar.value`` of every kind (pod specs,
pod templates, PodPreset...), RawExtensions by what they hold (ControllerRevision
``data``), ``Secret`` values (Secrets are dropped unless the runner allows
them), the last-applied annotation judged by the object's own kind, and
fields the codec does not know. See ``docs/safety.md``.

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

import logging
from collections.abc import Mapping
from typing import Any, Final

import trio

from tattler_etcd import codec
from tattler_etcd.data import Entry
from tattler_etcd.errors import TattlerError, UnsafeObjectError
from tattler_etcd.pipeline.redaction import (
    LAST_APPLIED,
    LAST_APPLIED_ANNOTATION,
    REDACTED,
    REDACTED_DATA,
    Redactor,
    default_redactor,
    drop_unknown_keys,
)
from tattler_etcd.pipeline.sync import SyncMarker
from tattler_etcd.readers import turns
from tattler_etcd.stats import Counters

__all__ = [
    "CONTAINER_LISTS",
    "LAST_APPLIED",
    "LAST_APPLIED_ANNOTATION",
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

#: Where the pod spec is in the common workload kinds (for reference and tests:
#: the rules themselves follow every EnvVar the schema holds, see redaction.py).
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
#: Objects scrubbed between two looks at the event loop: ~0.5 ms of work.
_SLICE: Final = 64
_MAGIC: Final = b"k8s\x00"  # what every protobuf value starts with (codec.MAGIC)


def paths_for(kind: str) -> tuple[tuple[str, ...], ...]:
    """The value paths redacted by default in an object of ``kind`` (JSON names, ``"*"`` = every element).

    Neither the last-applied annotation (scrubbed as JSON) nor RawExtensions
    (scrubbed by what they hold) are among them.
    """
    return default_redactor().paths_for(kind)


def scrub_dict(obj: dict[str, Any], *, kind: str | None = None, rules: Redactor | None = None) -> int:
    """Redact, in place, a JSON-shaped object by the default rules (or ``rules``); how many values changed.

    ``kind`` defaults to ``obj["kind"]``. A list kind (``PodList``...) has each
    of its ``items`` scrubbed as the item kind; this is what recordings of
    list responses need. ``"$unknown"`` keys are dropped unless the rules keep them.

    Raises:
        UnsafeObjectError: the object does not have the shape the rules
            expect, so it cannot be known to be clean. The message names the
            path, never a value.
    """
    return (rules or default_redactor()).scrub_dict(obj, kind=kind)


def scrub_value(value: bytes, kind: str, *, rules: Redactor | None = None) -> tuple[bytes, int]:
    """Redact protobuf ``value`` (an object of ``kind``) without building its dict.

    Returns the new bytes and how many values changed (the bytes are returned
    unchanged when nothing changed; unknown fields dropped change them too).

    Raises:
        UnsafeObjectError: the codec cannot walk the value; chained to its error.
    """
    new, n, _dropped = (rules or default_redactor()).scrub_value(value, kind)
    return new, n


def scrub_entry(entry: Entry, *, allow_secrets: bool = False, rules: Redactor | None = None) -> int | None:
    """Redact ``entry`` in place, in whatever form it holds; how many values changed.

    Returns None when the entry must not pass at all (a Secret while secrets
    are not allowed). Unknown fields dropped count as changed values here
    (the stage counts them apart).

    A protobuf entry is parsed once (``codec.parse``); every pass (unknown
    fields, the kind's paths, RawExtensions, the last-applied annotation) edits
    that parsed object, and it is serialized once, only when something
    changed. The parsed object is not kept in the entry: entries holding one
    (several times the size of the bytes) measured slower end to end wherever
    entries are kept, a reader's index or a batch (docs/performance.md).

    Raises:
        UnsafeObjectError: the entry cannot be inspected; it must not pass.
    """
    result = _scrub_entry(entry, allow_secrets, rules or default_redactor())
    return None if result is None else result[0] + result[1]


def _scrub_entry(entry: Entry, allow_secrets: bool, rules: Redactor) -> tuple[int, int] | None:
    """(values redacted, unknown fields dropped: 0 or more), or None for a Secret not allowed."""
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
                    n, dropped, new = rules.scrub_parsed(parsed, kind, value)
                except TattlerError as exc:
                    raise UnsafeObjectError(
                        f"cannot walk the value: {type(exc).__name__}: {str(exc)[:200]}") from exc
                if new is not value:
                    entry.replace_value(new)  # drops the clear bytes (and any form built from them)
                return n, (1 if dropped else 0)
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
    # "$unknown" comes only from the codec's own decoding: while it never kept
    # one in this process, no dict can hold one, and the walk is spared.
    unknown = 0
    if not rules.keep_unknown_fields and codec.counters["codec.unknown_fields"]:
        unknown = drop_unknown_keys(raw)
    n = rules.scrub_dict(raw, kind=kind, key=entry.key, drop_unknown=False)
    if n or unknown:
        # Drops the stored bytes (they still hold the clear values) and any model built from them.
        entry.replace_raw(raw)
    return n, unknown


async def run_safety(
    receive: trio.MemoryReceiveChannel[list[Entry] | SyncMarker],
    send: trio.MemorySendChannel[list[Entry] | SyncMarker],
    *,
    counters: Counters,
    allow_secrets: bool = False,
    rules: Redactor | None = None,
) -> None:
    """The stage: scrub every entry of every chunk (a :class:`SyncMarker` passes); closes ``send`` at the end.

    Counters: ``safety.in``, ``safety.out``, ``safety.redacted`` (values),
    ``safety.dropped.secret``, ``safety.dropped.unsafe``, and
    ``safety.unknown_fields.<Kind>`` (objects that had fields the codec does
    not know, dropped unless ``rules.keep_unknown_fields``; logged by key).
    """
    rules = rules or default_redactor()
    warned: set[str] = set()
    async with receive, send:
        async for chunk in receive:
            if isinstance(chunk, SyncMarker):  # the first sync's end (pipeline.sync): passed on as it is
                await send.send(chunk)
                continue
            out: list[Entry] = []
            redacted = 0
            for i, entry in enumerate(chunk):
                if i and not i % _SLICE:
                    await turns.wait_turn()  # a reader turning a page around goes first (readers.turns)
                try:
                    result = _scrub_entry(entry, allow_secrets, rules)
                except Exception as exc:  # noqa: BLE001 - fail closed: anything unexpected drops the entry
                    counters.add("safety.dropped.unsafe")
                    reason = str(exc) if isinstance(exc, TattlerError) else type(exc).__name__
                    logger.warning("safety: dropped %s: cannot inspect it (%s)", entry.key, reason)
                    continue
                if result is None:
                    counters.add("safety.dropped.secret")
                    logger.debug("safety: dropped %s: secrets are not allowed", entry.key)
                    continue
                n, dropped = result
                if dropped:
                    _note_unknown(entry, counters, warned)
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


def _note_unknown(entry: Entry, counters: Counters, warned: set[str]) -> None:
    """Count and log an object whose unknown fields were dropped: by key, never a value."""
    counters.add(f"safety.unknown_fields.{entry.kind}")
    if entry.kind not in warned and len(warned) < 1024:
        warned.add(entry.kind)
        logger.warning("safety: %s (%s) had fields this release cannot read; dropped them (and will from "
                       "every %s; keep them with --keep-unknown-fields)", entry.key, entry.kind, entry.kind)
    else:
        logger.info("safety: %s: dropped fields this release cannot read", entry.key)
