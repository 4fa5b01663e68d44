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

The rules are the pipeline's (:mod:`tattler_etcd.pipeline.redaction`), the
user's extra rules included (:func:`scrubbers`).

Credentials (:class:`CredentialScrubber`): a recording holds no userinfo from
URLs, no password or token sent in a request (headers, URL, JSON body) or
handed out by the server (etcd's ``/v3/auth/authenticate`` token), and every
stored body, error replies included, has each credential the run has seen
masked before it is written (by as many ``*``, so lengths stay right).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from tattler_etcd import codec
from tattler_etcd.codec.wire import length_delimited, replace_field
from tattler_etcd.errors import TattlerError, UnsafeObjectError
from tattler_etcd.pipeline.redaction import REDACTED, Redactor, default_redactor

__all__ = [
    "WITHHELD",
    "CredentialScrubber",
    "ObjectScrubber",
    "ValueScrubber",
    "scrub_apiserver_line",
    "scrub_etcd_doc",
    "scrub_json_body",
    "scrub_served_object",
    "scrub_stored_value",
    "scrub_watch_frame",
    "scrubbers",
    "without_userinfo",
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


def scrub_stored_value(value: bytes, key: str, rules: Redactor | None = None) -> bytes:
    """The safety stage's rules applied to one value as etcd stores it (the recorder's default).

    Protobuf is scrubbed in place (:meth:`Redactor.scrub_value`, unknown
    fields dropped unless the rules keep them), JSON through the dict; a
    value is written again only when something changed, so untouched values
    keep their exact bytes. Secrets are redacted, not dropped: the replay's
    pipeline drops them (or lets them through redacted) as a live run would.

    Raises:
        tattler_etcd.errors.TattlerError: the value does not decode, or its
            shape does not match the rules (the caller withholds it).
    """
    rules = rules or default_redactor()
    if value[:4] == codec.MAGIC:
        kind = codec.parse(value).kind
    else:
        obj = codec.decode(value)
        found = obj.get("kind") if isinstance(obj, dict) else None
        if not isinstance(found, str) or not found:
            raise UnsafeObjectError("no kind")
        kind = found
    new, _n, _dropped = rules.scrub_value(value, kind, key=key)
    return new


def scrub_served_object(obj: dict[str, Any], rules: Redactor | None = None) -> dict[str, Any]:
    """The safety stage's rules applied to one object as the APIServer serves it (in place).

    Raises:
        tattler_etcd.errors.UnsafeObjectError: the shape does not match the rules.
    """
    (rules or default_redactor()).scrub_dict(obj)
    return obj


def scrubbers(rules: Redactor | None = None) -> tuple[ValueScrubber, ObjectScrubber]:
    """The recorder's two scrubbers bound to ``rules`` (default: the default rules)."""
    return (lambda value, key: scrub_stored_value(value, key, rules)), (lambda obj: scrub_served_object(obj, rules))


def without_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` (what a file may say about where the requests went)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = authority.rpartition("@")[2]
    return f"{scheme}://{authority}{slash}{tail}"


#: JSON keys whose values are credentials in requests (etcd's auth calls) and replies (its token).
_CREDENTIAL_KEYS = frozenset({"password", "token", "access_token", "id_token", "refresh_token",
                              "client_secret", "secret"})
_QUOTED_KEYS = tuple(f'"{k}":'.encode() for k in _CREDENTIAL_KEYS)
#: Shorter strings are not looked for in bodies: they would match by chance and prove nothing.
_MIN_CREDENTIAL = 4


class CredentialScrubber:
    """Remembers every credential a recording run has seen and removes it from what is stored.

    Why: headers are filtered, but credentials also travel in URLs
    (``http://user:pass@host``), request bodies (etcd's ``authenticate``) and
    replies (its token), and a server's error body may echo them back.
    """

    def __init__(self) -> None:
        self.secrets: set[str] = set()

    def learn_request(self, url: Any, headers: Any, body: bytes) -> None:
        """Note the credentials a request carries (before anything of it is stored)."""
        for name in ("authorization", "proxy-authorization", "x-api-key", "cookie"):
            value = headers.get(name)
            if value:
                self._add_header(value)
        password = getattr(url, "password", None)
        if password:
            self._add(password)
            username = getattr(url, "username", "")
            self._add(f"{username}:{password}")
        userinfo = getattr(url, "userinfo", b"")
        if userinfo and b":" in userinfo:
            self._add(userinfo.decode("ascii", "replace"))
        params = getattr(url, "params", None)
        for key, value in params.multi_items() if params is not None else ():
            if key.lower() in _CREDENTIAL_KEYS:
                self._add(value)
        self._learn_json(body)

    def learn_response(self, body: bytes) -> None:
        """Note credentials a reply hands out (an auth token)."""
        self._learn_json(body)

    def _learn_json(self, body: bytes) -> None:
        if not body or b"{" not in body[:64]:
            return
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            return
        stack = [doc]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                for k, v in node.items():
                    if isinstance(k, str) and k.lower() in _CREDENTIAL_KEYS and isinstance(v, str):
                        self._add(v)
                    elif isinstance(v, (dict, list)):
                        stack.append(v)
            elif isinstance(node, list):
                stack.extend(v for v in node if isinstance(v, (dict, list)))

    def _add_header(self, value: str) -> None:
        self._add(value)
        scheme, _, token = value.partition(" ")
        token = token.strip()
        if token:
            self._add(token)
            if scheme.lower() == "basic":
                try:
                    plain = base64.b64decode(token, validate=True).decode("utf-8")
                except (binascii.Error, ValueError):
                    return
                self._add(plain)
                self._add(plain.partition(":")[2])

    def _add(self, secret: str) -> None:
        if len(secret) >= _MIN_CREDENTIAL and secret != REDACTED:
            self.secrets.add(secret)
            # Also as it would appear inside JSON text, URL-encoded or in base64.
            for form in (json.dumps(secret)[1:-1], quote(secret, safe=""),
                         base64.b64encode(secret.encode()).decode()):
                if len(form) >= _MIN_CREDENTIAL:
                    self.secrets.add(form)

    def text(self, text: str) -> str:
        """``text`` with every known credential replaced by ``REDACTED`` (longest first)."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def mask(self, body: str | bytes) -> str | bytes:
        """A reply body with every known credential masked by as many ``*``: same length.

        Why the same length: a watch body's timing records the size of each
        line as the reader got it (a replay checks them), and a protobuf body
        holds length fields; a mask keeps both right.
        """
        if isinstance(body, bytes):
            out = body
            for secret in sorted(self.secrets, key=len, reverse=True):
                s = secret.encode("utf-8")
                if s in out:
                    out = out.replace(s, b"*" * len(s))
            return out
        for secret in sorted(self.secrets, key=len, reverse=True):
            if secret in body:
                body = body.replace(secret, "*" * len(secret))
        return body

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        """A vcrpy request dict as it may be stored: no userinfo, no credential in URI, headers or body."""
        out = dict(request)
        out["uri"] = self.text(without_userinfo(str(request["uri"])))
        body = request.get("body")
        if isinstance(body, str) and body:
            out["body"] = self.text(_blank_credential_fields(body))  # type: ignore[arg-type]
        elif isinstance(body, bytes) and body:
            out["body"] = self.mask(_blank_credential_fields(body))
        out["headers"] = {k: [self.text(v) if isinstance(v, str) else v for v in vs]
                          for k, vs in (request.get("headers") or {}).items()}
        return out

    def response(self, response: dict[str, Any], *, auth: bool = False) -> dict[str, Any]:
        """A vcrpy response dict as it may be stored (its body masked, its headers scrubbed).

        ``auth``: the reply of an authentication call (unary, never timed by
        line): its credential fields (``token``...) are replaced too.
        """
        out = dict(response)
        body = (response.get("body") or {}).get("string")
        if isinstance(body, (str, bytes)) and body:
            out["body"] = {**response["body"], "string": self.mask(_blank_credential_fields(body) if auth else body)}
        out["headers"] = {k: [self.text(v) if isinstance(v, str) else v for v in vs]
                          for k, vs in (response.get("headers") or {}).items()}
        return out


def _blank_credential_fields(body: str | bytes) -> str | bytes:
    """A JSON body with the values of credential keys (``password``, ``token``...) replaced; others as they are.

    Line by line, so a watch body (one JSON document a line) is covered too.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if not any(k in raw for k in _QUOTED_KEYS):
        return body
    lines = raw.split(b"\n")
    changed = False
    for i, line in enumerate(lines):
        if not line.strip().startswith(b"{"):
            continue
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if _blank_fields(doc):
            lines[i] = json.dumps(doc, separators=(",", ":")).encode()
            changed = True
    if not changed:
        return body
    out = b"\n".join(lines)
    return out.decode("utf-8") if isinstance(body, str) else out


def _blank_fields(doc: Any) -> int:
    n = 0
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(k, str) and k.lower() in _CREDENTIAL_KEYS and isinstance(v, str) and v \
                        and v != REDACTED:
                    node[k] = REDACTED
                    n += 1
                elif isinstance(v, (dict, list)):
                    stack.append(v)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return n


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
