"""Deliver entries to NATS JetStream: a replayable stream of changes and a KV mirror of the state.

For each entry of a batch, :class:`NatsProcessor` publishes

* to the stream (default ``tattler``), on the object's subject
  ``tattler.<resource>.<namespace or _>.<name>`` (escaping:
  :mod:`tattler_etcd.delivery.subjects`): the entry's JSON form (the CLI's
  line), with headers ``Tattler-Change``, ``Tattler-Kind``, ``Tattler-Uid``,
  ``Tattler-Resource-Version`` and ``Nats-Msg-Id`` =
  :func:`~tattler_etcd.delivery.subjects.change_id`. JetStream stores a
  message whose id it saw within the stream's duplicate window (default two
  minutes) only once, so two tattler-etcd replicas reading the same cluster
  may publish side by side: active-active, no leader election;
* to the KV bucket (default ``tattler-state``), under the object's key: the
  entry's JSON form for ADD, UPDATE and SNAPSHOT; for DELETE a delete marker
  (``KV-Operation: DEL``) that carries the DELETE entry's JSON, so a watcher
  learns which object went. Every KV write is a compare-and-set over the
  key's last value the processor knows of, and a state older (by
  resourceVersion) than the bucket's is never written: a replica that lags
  behind cannot set a key back (see :meth:`NatsProcessor._resolve`). Readers emit a DELETE for every object a relist
  no longer finds, so after a relist every vanished key is deleted too.

Publishes are pipelined: every message of the batch is sent (in windows of
2,000) with a reply subject on one inbox of ours, then the acknowledgements
are awaited together; a batch is done when every acknowledgement is in. One
subscription and a list per window, not a future per message: ~2.7x the
messages per second of nats-py's ``publish_async`` here, and a refusal is
seen (see :class:`_Acks`). When some do not come (the
connection was lost, the server restarted, JetStream is not ready yet) the
processor waits, then publishes again from the first entry not acknowledged,
in order, until all are: under the BLOCK policy nothing is lost, and the
stream's deduplication and the idempotent KV puts make the repeats harmless.
A message the server refuses for good (too large, say) is logged with the
object's key, counted in :attr:`NatsProcessor.failed` and skipped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from tattler_etcd.data import ChangeType, Entry
from tattler_etcd.delivery._connection import Connection, open_connection, public_url, require_nats
from tattler_etcd.delivery.subjects import change_id, kv_key
from tattler_etcd.errors import ConfigError, DeliveryError, TattlerError

__all__ = ["NatsOptions", "NatsProcessor", "open_nats_processor", "parse_nats_url"]

logger = logging.getLogger("tattler_etcd.delivery")

#: Room left for headers under the server's max_payload.
_HEADER_ROOM = 1024
#: Most messages in flight at once: their acknowledgements are awaited together.
_WINDOW = 2000
#: JetStream's error code for a publish whose expected last subject sequence is not the last one.
_WRONG_LAST_SEQUENCE = 10071
_SEQ = re.compile(rb'"seq":\s*(\d+)')


@dataclasses.dataclass(frozen=True)
class NatsOptions:
    """Where and how to deliver: parsed from ``nats://HOST:PORT?stream=...&kv=...``.

    Attributes:
        url: the server URL handed to nats-py (credentials kept, no query).
        stream: the JetStream stream's name (``""``: publish no stream messages).
        bucket: the KV bucket's name (``""``: keep no state mirror).
        prefix: the first subject token of the stream's subjects.
        duplicate_window: seconds the stream remembers message ids (when it creates the stream).
        ack_timeout: seconds to wait for a batch's acknowledgements before publishing again.
    """

    url: str
    stream: str = "tattler"
    bucket: str = "tattler-state"
    prefix: str = "tattler"
    duplicate_window: float = 120.0
    ack_timeout: float = 5.0


_QUERY_KEYS = {"stream": "stream", "kv": "bucket", "prefix": "prefix", "duplicate_window": "duplicate_window",
               "ack_timeout": "ack_timeout"}


def parse_nats_url(text: str, *, ignore: Sequence[str] = ()) -> NatsOptions:
    """:class:`NatsOptions` from ``nats://[USER:PASS@]HOST:PORT[?stream=S&kv=B&prefix=P]``.

    Query keys in ``ignore`` (the CLI's ``policy``) are left to the caller.

    Raises:
        ConfigError: not a nats:// URL, an unknown query key or a bad value.
    """
    parts = urllib.parse.urlsplit(text)
    shown = public_url(text)
    if parts.scheme != "nats" or not parts.hostname:
        raise ConfigError(f"{shown}: not a nats://HOST:PORT URL")
    values: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key in ignore:
            continue
        field = _QUERY_KEYS.get(key)
        if field is None:
            raise ConfigError(f"{shown}: unknown option {key!r} (known: {', '.join(sorted(_QUERY_KEYS))})")
        if field in ("duplicate_window", "ack_timeout"):
            try:
                values[field] = float(value)
            except ValueError:
                raise ConfigError(f"{shown}: {key} must be a number of seconds, not {value!r}") from None
            if values[field] <= 0:
                raise ConfigError(f"{shown}: {key} must be more than 0 seconds")
        else:
            if field == "prefix" and not value:
                raise ConfigError(f"{shown}: prefix must not be empty")
            values[field] = value
    server = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    return NatsOptions(url=server, **values)


@dataclasses.dataclass(slots=True)
class _Op:
    """One message to publish; ``entry`` is the entry it carries (for logs: its key)."""

    subject: str
    payload: bytes
    headers: dict[str, str] | None
    entry: Entry
    stream: bool
    #: KV ops: the key, and the entry's resourceVersion as a number (None when it is not one).
    key: str = ""
    rv: int | None = None


class NatsProcessor:
    """A processor publishing each batch to a JetStream stream and KV bucket (see the module docstring).

    Build it with :func:`open_nats_processor`, which connects, makes the
    stream and bucket when they are missing, and closes the connection when
    its block ends.
    """

    def __init__(self, conn: Connection, options: NatsOptions) -> None:
        self._conn = conn
        self.options = options
        self._kv_prefix = f"$KV.{options.bucket}."
        self._acks: _Acks | None = None
        #: KV key -> (sequence, resourceVersion) of its last value we know of (our own puts, conflicts read).
        self._kv_known: dict[str, tuple[int, int | None]] = {}
        #: Entries whose every message was acknowledged.
        self.published = 0
        #: Stream messages the server already had (the same change, from a replica or a resend).
        self.duplicates = 0
        #: Messages published again after a lost acknowledgement.
        self.resent = 0
        #: Messages the server refused for good (logged with the object's key), and skipped.
        self.failed = 0
        #: Entries skipped before publishing: their JSON could not be made, or is over max_payload.
        self.skipped = 0
        #: KV updates not written because the bucket already held that state or a newer one (a replica's).
        self.stale = 0

    async def setup(self) -> None:
        """Make the stream and the KV bucket unless they exist (as they are, then).

        Raises:
            DeliveryError: the server refused to make them.
        """
        nats, _ = require_nats()
        from nats.js.api import StorageType, StreamConfig

        js = self._conn.js
        o = self.options
        try:
            if o.stream:
                try:
                    await self._conn.call(js.stream_info, o.stream)
                except nats.js.errors.NotFoundError:
                    await self._conn.call(js.add_stream, StreamConfig(
                        name=o.stream, subjects=[f"{o.prefix}.>"], storage=StorageType.FILE,
                        duplicate_window=o.duplicate_window,
                    ))
                    logger.info("nats %s: created stream %s", self._conn.url, o.stream)
            if o.bucket:
                try:
                    await self._conn.call(js.key_value, o.bucket)
                except nats.js.errors.NotFoundError:
                    await self._conn.call(js.create_key_value, bucket=o.bucket, history=1)
                    logger.info("nats %s: created KV bucket %s", self._conn.url, o.bucket)
        except nats.errors.Error as exc:
            raise DeliveryError(
                f"nats {self._conn.url}: cannot set up stream {o.stream!r} / bucket {o.bucket!r}: "
                f"{type(exc).__name__}: {str(exc)[:256]}"
            ) from exc

    def _ops(self, entries: Iterable[Entry]) -> list[_Op]:
        o = self.options
        limit = self._conn.nc.max_payload - _HEADER_ROOM
        ops: list[_Op] = []
        for entry in entries:
            try:
                payload = entry.to_json_bytes()
            except TattlerError as exc:
                self.skipped += 1
                logger.warning("nats: skipped %s: %s", entry.key, str(exc)[:256])
                continue
            if len(payload) > limit:
                self.skipped += 1
                logger.warning("nats: skipped %s: its JSON is %d bytes, over the server's max_payload %d",
                               entry.key, len(payload), self._conn.nc.max_payload)
                continue
            key = kv_key(entry)
            if o.stream:
                ops.append(_Op(f"{o.prefix}.{key}", payload, {
                    "Nats-Msg-Id": change_id(entry),
                    "Tattler-Change": entry.change.value,
                    "Tattler-Kind": entry.kind,
                    "Tattler-Uid": entry.uid,
                    "Tattler-Resource-Version": entry.resource_version,
                }, entry, True))
            if o.bucket:
                headers = {"KV-Operation": "DEL"} if entry.change is ChangeType.DELETE else None
                rv = int(entry.resource_version) if entry.resource_version.isdigit() else None
                ops.append(_Op(self._kv_prefix + key, payload, headers, entry, False, key, rv))
        return ops

    async def __call__(self, batch: Iterable[Entry]) -> None:
        entries = list(batch)
        ops = self._ops(entries)
        start = 0
        delay = 0.1
        while start < len(ops):
            failed_at, reason = await self._conn.call(self._publish, ops, start)
            if failed_at is None:
                break
            self.resent += len(ops) - failed_at
            logger.warning("nats %s: %d of %d messages not acknowledged (%s); publishing again from %s in %.1fs",
                           self._conn.url, len(ops) - failed_at, len(ops), reason, ops[failed_at].entry.key, delay)
            start = failed_at
            await trio.sleep(delay)
            delay = min(delay * 2, 2.0)
        self.published += len({id(op.entry) for op in ops})

    async def _publish(self, ops: list[_Op], start: int) -> tuple[int | None, str]:
        """(asyncio) Publish ``ops[start:]`` pipelined; the index of the first not acknowledged, and why."""
        while start < len(ops):
            end = _window_end(ops, start)
            failed_at, reason = await self._publish_window(ops, start, end)
            if failed_at is not None:
                return failed_at, reason
            start = end
        return None, ""

    async def _publish_window(self, ops: list[_Op], start: int, end: int) -> tuple[int | None, str]:
        """(asyncio) Publish ``ops[start:end]``, then await their acknowledgements together."""
        import asyncio

        nats, _ = require_nats()
        nc = self._conn.nc
        timeout = self.options.ack_timeout
        if not nc.is_connected:
            # Not into nats-py's reconnect buffer: the resend after the reconnect would double it.
            return start, "not connected"
        acks = self._acks
        if acks is None:
            acks = self._acks = _Acks(nc.new_inbox())
            await nc.subscribe(acks.prefix + "*", cb=acks.on_reply)
        window = acks.open(end - start)
        reason = ""
        sent = skipped = 0
        for op in ops[start:end]:
            headers = op.headers
            if op.key:
                known = self._kv_known.get(op.key)
                if known is not None and _not_older(known[1], op.rv):
                    # The bucket holds this state or a newer one (ours, or a replica's): never set it back.
                    window.results[sent] = "stale"
                    sent += 1
                    skipped += 1
                    continue
                # Compare-and-set: written only over the value we know of (see _resolve).
                headers = dict(headers or ())
                headers["Nats-Expected-Last-Subject-Sequence"] = str(known[0] if known else 0)
            try:
                await nc.publish(op.subject, op.payload, reply=acks.reply_to(window, sent), headers=headers)
            except (nats.errors.Error, OSError) as exc:
                reason = f"{type(exc).__name__} while publishing"
                break
            sent += 1
        window.expect(sent, skipped)
        try:
            await asyncio.wait_for(window.done.wait(), timeout)
        except TimeoutError:
            pass
        acks.close(window)
        failed_at: int | None = None
        conflicts: list[int] = []
        for i, result in enumerate(window.results[:sent], start):
            op = ops[i]
            if result is None:
                failed_at, reason = i, reason or f"no acknowledgement within {timeout:g}s"
                break
            if isinstance(result, int):
                if op.key:
                    self._kv_known[op.key] = (result, op.rv)
                continue
            if result == "stale":
                self.stale += 1
                continue
            if result == "duplicate":
                self.duplicates += 1
                continue
            code, err_code, description = result
            if err_code == _WRONG_LAST_SEQUENCE and op.key:
                conflicts.append(i)
                continue
            if code is not None and code < 500:
                self.failed += 1
                logger.error("nats %s: %s refused for %s: %s", self._conn.url,
                             "stream message" if op.stream else "KV update", op.entry.key, description)
                continue
            failed_at, reason = i, reason or f"{code} {description}"
            break
        else:
            if sent < end - start:
                failed_at = start + sent
        if conflicts:
            unresolved = await self._resolve(ops, conflicts)
            if unresolved is not None and (failed_at is None or unresolved < failed_at):
                failed_at, reason = unresolved, "a KV conflict could not be settled"
        return failed_at, reason

    async def _resolve(self, ops: list[_Op], conflicts: list[int]) -> int | None:
        """(asyncio) KV puts refused because the key moved on (another replica wrote it): settle them.

        Each key's current value is read and remembered (sequence and
        resourceVersion), and ours published again: over that value if ours is
        newer, else skipped (counted in :attr:`stale`), as every later publish
        of an older state of that key is, resends included. So a replica that
        lags behind never sets a key back to an older state. Returns the index
        of the first conflict not settled (the server could not be read), or None.
        """
        nats, _ = require_nats()
        js = self._conn.js
        retry: list[int] = []
        for i in conflicts:
            op = ops[i]
            try:
                current = await js.get_last_msg(f"KV_{self.options.bucket}", op.subject)
            except nats.js.errors.NotFoundError:
                self._kv_known.pop(op.key, None)
                retry.append(i)
                continue
            except (nats.errors.Error, OSError):
                return i
            self._kv_known[op.key] = (int(current.seq or 0), _rv_of(current.data))
            retry.append(i)  # published again: skipped then as stale if the bucket holds newer
        if not retry:
            return None
        again = [ops[i] for i in retry]
        failed_at, _ = await self._publish(again, 0)
        return None if failed_at is None else retry[failed_at]


def _rv_of(data: bytes | None) -> int | None:
    """The resourceVersion in a KV value (an entry's JSON), as a number; None if none or an empty marker."""
    if not data:
        return None
    try:
        rv = json.loads(data).get("resourceVersion", "")
    except (ValueError, AttributeError):
        return None
    return int(rv) if isinstance(rv, str) and rv.isdigit() else None


def _not_older(known: int | None, rv: int | None) -> bool:
    """Whether the known value's resourceVersion is ``rv`` or later (False when either is not a number)."""
    return known is not None and rv is not None and known >= rv


def _window_end(ops: list[_Op], start: int) -> int:
    """Where the window from ``start`` ends: after _WINDOW messages, or before a KV key comes again.

    A key's second write in one window would be sent before the first one's
    sequence is known, and so be refused as a conflict with it.
    """
    keys: set[str] = set()
    end = start
    while end < len(ops) and end - start < _WINDOW:
        key = ops[end].key
        if key:
            if key in keys:
                break
            keys.add(key)
        end += 1
    return end


class _Window:
    """The acknowledgements of one window of messages, by position: None until each arrives.

    A result is the stored message's sequence (an int), ``"duplicate"`` (the
    stream had that message id already) or ``(code, err_code, description)``
    (refused; code None: no stream answered).
    """

    __slots__ = ("base", "done", "remaining", "results")

    def __init__(self, base: int, n: int) -> None:
        import asyncio

        self.base = base
        self.results: list[Any] = [None] * n
        self.remaining = n
        self.done = asyncio.Event()

    def expect(self, sent: int, skipped: int = 0) -> None:
        """Only ``sent`` positions were reached, ``skipped`` of them not published: wait for the rest."""
        self.remaining -= len(self.results) - sent + skipped
        if self.remaining <= 0:
            self.done.set()


class _Acks:
    """(asyncio) JetStream's publish acknowledgements, on one inbox subscription of our own.

    nats-py's ``publish_async`` would do this, but it loses any refusal: its
    reply handler raises the API error (to the connection's error callback)
    instead of failing the message's future, which then waits for ever. Here
    every reply is read (``_INBOX.<id>.<n>``, ``n`` counting every message
    sent) and lands in its window's list; the window's event is set when the
    last one is in. Replies for a window given up (timed out) are dropped.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix + "."
        self._next = 0
        self._open: dict[int, _Window] = {}

    def open(self, n: int) -> _Window:
        window = _Window(self._next, n)
        self._next += n
        self._open[window.base] = window
        return window

    def close(self, window: _Window) -> None:
        self._open.pop(window.base, None)

    def reply_to(self, window: _Window, i: int) -> str:
        return f"{self.prefix}{window.base + i}"

    async def on_reply(self, msg: Any) -> None:
        try:
            n = int(msg.subject[len(self.prefix):])
        except ValueError:
            return
        for window in self._open.values():
            i = n - window.base
            if 0 <= i < len(window.results):
                break
        else:
            return  # a window given up, or a stray reply
        if window.results[i] is not None:
            return
        data = msg.data
        if msg.headers and msg.headers.get("Status") == "503":
            window.results[i] = (None, None, "no stream answered")  # no responders: the stream is not (yet) there
        elif b'"error"' not in data:
            # A PubAck ({"stream":"tattler", "seq":5,"duplicate": true}): no need to parse it all.
            if b'"duplicate"' in data:
                window.results[i] = "duplicate"
            else:
                m = _SEQ.search(data)
                window.results[i] = int(m.group(1)) if m else 0
        else:
            try:
                error = json.loads(data).get("error") or {}
            except (ValueError, AttributeError):
                error = {"description": "an answer that is not a JetStream acknowledgement"}
            window.results[i] = (error.get("code"), error.get("err_code"), str(error.get("description", "")))
        window.remaining -= 1
        if window.remaining <= 0:
            window.done.set()


@asynccontextmanager
async def open_nats_processor(url_or_options: str | NatsOptions) -> AsyncIterator[NatsProcessor]:
    """Connect, make the stream and bucket if missing, and yield the processor for the block.

    Raises:
        ConfigError: a bad URL, or the [nats] extra is missing.
        DeliveryError: the server cannot be reached or refused the set-up.
    """
    options = parse_nats_url(url_or_options) if isinstance(url_or_options, str) else url_or_options
    async with open_connection(options.url) as conn:
        proc = NatsProcessor(conn, options)
        await proc.setup()
        yield proc
