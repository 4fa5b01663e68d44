"""Scrub recorded HTTP bodies before they reach a file.

A recording is written once and then shared (committed, attached to bug
reports), so it must never hold what the safety stage would have hidden. The
recorder runs every object it can find in a reply through the same rules as
the pipeline's safety stage, in the object's stored form:

- etcd gateway replies (range pages, watch lines, anything else): every
  mapping with a base64 ``key`` and ``value`` is an etcd key-value; its value
  is decoded from base64, scrubbed, and encoded again;
- APIServer JSON replies: list ``items`` and watch-event ``object`` s.

A value the rules cannot inspect (bytes that do not decode) is replaced by a
marker, so the file fails closed: the replay then sees a value that does not
decode and counts it, as the live reader would have counted the original.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from tattler_etcd import codec
from tattler_etcd.codec.wire import length_delimited, replace_field
from tattler_etcd.errors import TattlerError
from tattler_etcd.pipeline.safety import scrub_dict

__all__ = [
    "WITHHELD",
    "ObjectScrubber",
    "ValueScrubber",
    "scrub_apiserver_line",
    "scrub_etcd_doc",
    "scrub_json_body",
    "scrub_served_object",
    "scrub_stored_value",
    "scrub_watch_frame",
]

#: What replaces a value the recorder could not inspect.
WITHHELD = b"tattler-etcd: value withheld by the recorder (it could not be inspected)"

#: ``(value, key) -> value``: the stored bytes of one object, scrubbed. May raise
#: any :class:`~tattler_etcd.errors.TattlerError` when it cannot inspect them.
ValueScrubber = Callable[[bytes, str], bytes]

#: ``(obj) -> obj``: one JSON-shaped object, scrubbed in place or replaced.
ObjectScrubber = Callable[[dict[str, Any]], dict[str, Any]]


def scrub_etcd_doc(doc: Any, scrub: ValueScrubber) -> int:
    """Scrub every etcd key-value inside ``doc`` in place; returns how many values were rewritten.

    Walks the whole reply rather than known paths, so a range page (``kvs``),
    a watch line (``result.events[].kv`` / ``prev_kv``) and a transaction reply
    are all covered by the same rule.
    """
    changed = 0
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            value = node.get("value")
            key = node.get("key")
            if isinstance(value, str) and isinstance(key, str):
                new = _scrub_b64(value, key, scrub)
                if new != value:
                    node["value"] = new
                    changed += 1
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return changed


def _scrub_b64(value: str, key: str, scrub: ValueScrubber) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
        key_text = base64.b64decode(key).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return base64.b64encode(WITHHELD).decode()
    if not raw:
        return value
    try:
        new = scrub(raw, key_text)
    except TattlerError:
        new = WITHHELD
    return value if new == raw else base64.b64encode(new).decode()


def scrub_json_body(body: bytes, scrub: ValueScrubber) -> bytes:
    """One etcd gateway reply body (a whole JSON document), scrubbed.

    Unchanged bodies come back as the same bytes; a body that is not JSON
    (an HTML error page, say) carries no etcd values and is kept as it is.
    """
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    if scrub_etcd_doc(doc, scrub) == 0:
        return body
    return json.dumps(doc, separators=(",", ":")).encode()


def scrub_apiserver_line(body: bytes, scrub: ObjectScrubber) -> bytes:
    """One APIServer JSON document (a list, an object, or a watch event line), scrubbed."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    if not isinstance(doc, dict):
        return body
    try:
        return _scrub_apiserver_doc(doc, body, scrub)
    except TattlerError:
        return WITHHELD


def _scrub_apiserver_doc(doc: dict[str, Any], body: bytes, scrub: ObjectScrubber) -> bytes:
    if isinstance(doc.get("items"), list):
        # The list whole: its items carry no kind in JSON; the rules take it from the list's kind.
        doc = scrub(doc)
    elif isinstance(doc.get("object"), dict) and "type" in doc:
        doc["object"] = scrub(doc["object"])
    elif isinstance(doc.get("metadata"), dict) and "kind" in doc:
        doc = scrub(doc)
    else:
        return body
    return json.dumps(doc, separators=(",", ":")).encode()


def scrub_stored_value(value: bytes, key: str) -> bytes:
    """The safety stage's rules applied to one value as etcd stores it (the recorder's default).

    Decoded (protobuf through the codec, or JSON), scrubbed by
    :func:`tattler_etcd.pipeline.safety.scrub_dict`, and encoded again only
    when something changed, so untouched values keep their exact bytes.

    Raises:
        tattler_etcd.errors.TattlerError: the value does not decode, or its
            shape does not match the rules (the caller withholds it).
    """
    obj = codec.decode(value)
    if scrub_dict(obj) == 0:
        return value
    if codec.is_json(value):
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        return text + b"\n" if value.endswith(b"\n") else text
    return codec.encode(obj)


def scrub_served_object(obj: dict[str, Any]) -> dict[str, Any]:
    """The safety stage's rules applied to one object as the APIServer serves it (in place).

    Raises:
        tattler_etcd.errors.UnsafeObjectError: the shape does not match the rules.
    """
    scrub_dict(obj)
    return obj


def scrub_watch_frame(frame: bytes, scrub: ValueScrubber) -> tuple[bytes, str, bytes]:
    """One protobuf watch frame (a bare ``meta/v1`` WatchEvent, as the APIServer streams it), scrubbed.

    Returns the frame (the same bytes when nothing changed), the event type
    and the object's bytes (scrubbed). Only the object's ``raw`` bytes are
    replaced; every other field keeps its bytes. A frame that does not parse
    comes back as :data:`WITHHELD` with type ``""``.
    """
    try:
        fields = length_delimited(frame)
        type_ = next((frame[f.start:f.end].decode("utf-8") for f in fields if f.number == 1), "")
        obj_field = next((f for f in fields if f.number == 2), None)
        if obj_field is None:
            return frame, type_, b""
        ext = frame[obj_field.start:obj_field.end]
        raw_field = next((f for f in length_delimited(ext) if f.number == 1), None)
        if raw_field is None:
            return frame, type_, b""
        raw = ext[raw_field.start:raw_field.end]
    except (ValueError, UnicodeDecodeError):
        return WITHHELD, "", b""
    try:
        clean = scrub(raw, "") if raw else raw
    except TattlerError:
        clean = WITHHELD
    if clean == raw:
        return frame, type_, raw
    new_ext = replace_field(ext, raw_field, clean)
    return replace_field(frame, obj_field, new_ext), type_, clean
