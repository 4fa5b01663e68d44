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
  learns which object went. Readers emit a DELETE for every object a relist
  no longer finds, so after a relist every vanished key is deleted too. Each
  put is a compare-and-set made only over an older version of the key, so
  the mirror never goes back, whatever the replicas' order
  (:mod:`._kvorder`).

Once the readers' first sync was delivered (:meth:`NatsProcessor.synced`),
the keys of every fully listed resource that this run was not given and that
hold a version at or before the list's revision are deleted (the sweep):
their objects went while no tattler-etcd ran. See ``docs/delivery.md``.

Publishes are pipelined: every message of the batch is sent (in windows of
2,000) with a reply subject on one inbox of ours, then the acknowledgements
are awaited together; a batch is done when every acknowledgement is in. One
subscription and a list per window, not a future per message: ~2.7x the
messages per second of nats-py's ``publish_async`` here, and a refusal is
seen (see :class:`_Acks`). When some do not come (the
connection was lost, the server restarted, JetStream is not ready yet) the
processor waits, then publishes again from the first entry not acknowledged,
in order, until all are: under the BLOCK policy nothing is lost, and the
streams' deduplication and the conditional KV puts make the repeats harmless.
A message the server refuses for good (too large, say) is logged with the
object's key, counted in :attr:`NatsProcessor.failed` and skipped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.delivery._connection import (
    CONNECT_QUERY_KEYS,
    Connection,
    ConnectOptions,
    connect_option,
    open_connection,
    public_url,
    require_nats,
)
from tattler_etcd.delivery._kvorder import (
    EXPECTED_SEQUENCE,
    ROUNDS,
    WRONG_LAST_SEQUENCE,
    KvOrder,
    ack_sequence,
    known_version,
    window_end,
)
from tattler_etcd.delivery.subjects import change_id, kv_key, resource_token
from tattler_etcd.errors import ConfigError, DeliveryError, TattlerError

if TYPE_CHECKING:
    from tattler_etcd.pipeline.sync import SyncInfo

__all__ = ["NatsOptions", "NatsProcessor", "open_nats_processor", "parse_nats_url"]

logger = logging.getLogger("tattler_etcd.delivery")

#: Room left for headers under the server's max_payload.
_HEADER_ROOM = 1024
#: Most messages in flight at once: their acknowledgements are awaited together.
_WINDOW = 2000
#: Keys the sweep reads and deletes at once.
_SWEEP_WINDOW = 200


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
        max_age: seconds the stream keeps a message (when it creates the stream; None: for ever).
        connect: TLS and credentials (query keys ``ca``, ``cert``, ``key``, ``insecure``, ``tls``,
            ``creds``, ``nkey``, ``token_file``, ``token_env``, ``password_env``; see
            :class:`~tattler_etcd.delivery.ConnectOptions`).
    """

    url: str
    stream: str = "tattler"
    bucket: str = "tattler-state"
    prefix: str = "tattler"
    duplicate_window: float = 120.0
    ack_timeout: float = 5.0
    max_age: float | None = None
    connect: ConnectOptions = dataclasses.field(default_factory=ConnectOptions)


_QUERY_KEYS = {"stream": "stream", "kv": "bucket", "prefix": "prefix", "duplicate_window": "duplicate_window",
               "ack_timeout": "ack_timeout", "max_age": "max_age"}


def parse_nats_url(text: str, *, ignore: Sequence[str] = ()) -> NatsOptions:
    """:class:`NatsOptions` from ``nats://[USER[:PASS]@]HOST:PORT[?stream=S&kv=B&prefix=P&ca=FILE...]``.

    Query keys in ``ignore`` (the CLI's ``policy``) are left to the caller.

    Raises:
        ConfigError: not a nats:// URL, an unknown query key or a bad value.
    """
    parts = urllib.parse.urlsplit(text)
    shown = public_url(text)
    if parts.scheme != "nats" or not parts.hostname:
        raise ConfigError(f"{shown}: not a nats://HOST:PORT URL")
    values: dict[str, Any] = {}
    connect: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key in ignore:
            continue
        if key in CONNECT_QUERY_KEYS:
            connect_option(connect, key, value, shown)
            continue
        field = _QUERY_KEYS.get(key)
        if field is None:
            known = ", ".join(sorted((*_QUERY_KEYS, *CONNECT_QUERY_KEYS)))
            raise ConfigError(f"{shown}: unknown option {key!r} (known: {known})")
        if field in ("duplicate_window", "ack_timeout", "max_age"):
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
    return NatsOptions(url=server, connect=ConnectOptions(**connect), **values)


@dataclasses.dataclass(slots=True)
class _Op:
    """One message to publish; ``entry`` is the entry it carries (for logs: its key)."""

    subject: str
    payload: bytes
    headers: dict[str, str] | None
    entry: Entry
    stream: bool


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
        #: What each KV key holds, so that puts never take the mirror back (:mod:`._kvorder`).
        self._kv = KvOrder(options.bucket) if options.bucket else None
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
        #: KV keys deleted by the sweep after the first sync (objects gone while no tattler-etcd ran).
        self.swept = 0
        #: The KV keys of every entry given so far, until the first sync's sweep (None: no more).
        self._given: set[str] | None = set() if self._kv is not None else None

    def delivery_counts(self) -> dict[str, int]:
        """The counts above by name, for ``tattler_delivery_total{processor, outcome}`` (pipeline/metrics.py)."""
        return {"published": self.published, "duplicates": self.duplicates, "resent": self.resent,
                "failed": self.failed, "skipped": self.skipped, "stale": self.stale,
                "kv_conflicts": self.kv_conflicts, "swept": self.swept}

    @property
    def stale(self) -> int:
        """KV puts not made: the key held that version or a newer one already (a replica's, or a resend's)."""
        return self._kv.stale if self._kv else 0

    @property
    def kv_conflicts(self) -> int:
        """KV puts whose compare-and-set lost to another writer, so that the key was read and decided again."""
        return self._kv.conflicts if self._kv else 0

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
                        duplicate_window=o.duplicate_window, max_age=o.max_age,
                    ))
                    logger.info("nats %s: created stream %s", self._conn.url, o.stream)
            if o.bucket:
                try:
                    await self._conn.call(js.key_value, o.bucket)
                except nats.js.errors.NotFoundError:
                    await self._conn.call(js.create_key_value, bucket=o.bucket, history=1)
                    logger.info("nats %s: created KV bucket %s", self._conn.url, o.bucket)
                else:
                    assert self._kv is not None
                    await self._conn.call(self._kv.load, js)
        except nats.errors.Error as exc:
            raise DeliveryError(
                f"nats {self._conn.url}: cannot set up stream {o.stream!r} / bucket {o.bucket!r}: "
                f"{type(exc).__name__}: {str(exc)[:256]}"
            ) from exc

    def _ops(self, entries: Iterable[Entry]) -> list[_Op]:
        o = self.options
        limit = self._conn.nc.max_payload - _HEADER_ROOM
        ops: list[_Op] = []
        given = self._given
        for entry in entries:
            key = kv_key(entry)
            if given is not None:
                given.add(key)  # skipped or not: this run knows the object, the sweep leaves its key
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
            msg_id = change_id(entry)
            if o.stream:
                ops.append(_Op(f"{o.prefix}.{key}", payload, {
                    "Nats-Msg-Id": msg_id,
                    "Tattler-Change": entry.change.value,
                    "Tattler-Kind": entry.kind,
                    "Tattler-Uid": entry.uid,
                    "Tattler-Resource-Version": entry.resource_version,
                }, entry, True))
            if o.bucket:
                # The version headers let a compare-and-set loser (and a restart) read the key's version
                # without its body; the id lets the bucket's stream drop a replica's copy of the change.
                headers = {"Nats-Msg-Id": msg_id, "Tattler-Uid": entry.uid,
                           "Tattler-Resource-Version": entry.resource_version}
                if entry.change is ChangeType.DELETE:
                    headers["KV-Operation"] = "DEL"
                ops.append(_Op(self._kv_prefix + key, payload, headers, entry, False))
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

    async def synced(self, info: SyncInfo) -> None:
        """The readers' first sync was delivered: sweep the KV keys no full list confirmed (docs/delivery.md).

        For each resource every reader fully listed at a known revision, a key
        under its prefix that this run was not given, that is not a delete
        marker and whose resourceVersion is an integer at or before the
        list's revision gets a compare-and-set delete marker (a DELETE entry
        at the list's revision, as a relist makes; on the stream too). A key
        another writer changed since is left as it is. Nothing is swept when
        a batch was dropped for this processor before, or for a resumed
        resource: the run may not have been given every object then.
        """
        given, self._given = self._given, None
        kv = self._kv
        if kv is None or given is None:
            return
        if info.dropped:
            logger.debug("nats: no KV sweep: a batch was dropped before the first sync was delivered")
            return
        lists = info.full_lists()
        for reader in info.readers:
            for r in reader.resources:
                if r.resource not in lists:
                    logger.debug("nats: no KV sweep of %s (reader %s): %s", r.resource, reader.name,
                                 "its first sync resumed" if not r.full_list else "its list's revision is not known")
        if not lists:
            return
        by_token = {resource_token(resource): int(rev) for resource, rev in lists.items()}
        plen = len(kv.prefix)
        todo: list[tuple[str, int]] = []
        for subject, (_seq, rv, _uid, deleted) in kv.known.items():
            key = subject[plen:]
            rev = by_token.get(key.partition(".")[0])
            if rev is None or deleted or rv is None or rv < 0 or rv > rev or key in given:
                continue
            todo.append((subject, rev))
        if not todo:
            logger.debug("nats: KV sweep of %s: every key was confirmed", ", ".join(sorted(lists)))
            return
        swept = 0
        for i in range(0, len(todo), _SWEEP_WINDOW):
            done, why = await self._conn.call(self._sweep, todo[i : i + _SWEEP_WINDOW])
            swept += done
            if why:
                logger.warning("nats %s: KV sweep stopped after %d keys: %s", self._conn.url, swept, why)
                break
        self.swept += swept
        logger.info("nats: bucket %s: swept %d key(s) of objects gone while no tattler-etcd ran (%s)",
                    self.options.bucket, swept, ", ".join(sorted(lists)))

    async def _sweep(self, todo: list[tuple[str, int]]) -> tuple[int, str]:
        """(asyncio) Read each key, and delete it if it still holds the version it was swept for."""
        import asyncio

        results = await asyncio.gather(*(self._sweep_one(subject, rev) for subject, rev in todo),
                                       return_exceptions=True)
        why = ""
        for result in results:
            if isinstance(result, BaseException):
                nats, _ = require_nats()
                if not isinstance(result, nats.errors.Error | OSError):
                    raise result
                why = why or f"{type(result).__name__}: {str(result)[:200]}"
        return sum(1 for r in results if r is True), why

    async def _sweep_one(self, subject: str, rev: int) -> bool:
        """(asyncio) One key: its current message, then a compare-and-set delete marker over it."""
        nats, _ = require_nats()
        kv = self._kv
        assert kv is not None
        key = subject[len(kv.prefix):]
        try:
            msg = await self._conn.js.get_msg(kv.stream, subject=subject)
        except nats.js.errors.NotFoundError:
            kv.known.pop(subject, None)
            return False
        seq, rv, uid, deleted = kv.known[subject] = known_version(msg.seq, msg.headers, msg.data)
        try:
            doc = json.loads(msg.data)
            entry = Entry(
                change=ChangeType.DELETE, source=SourceType(doc["source"]), uid=uid, api_version=doc["apiVersion"],
                kind=doc["kind"], namespace=doc.get("namespace"), name=doc["name"], resource_version=str(rev),
                raw={"apiVersion": doc["apiVersion"], "kind": doc["kind"], "metadata": {
                    k: v for k, v in (("name", doc["name"]), ("namespace", doc.get("namespace")), ("uid", uid),
                                      ("resourceVersion", str(rev))) if v}},
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            logger.debug("nats: KV sweep: %s holds no entry this release wrote: left", key)
            return False
        if deleted or rv is None or rv < 0 or rv > rev:
            logger.debug("nats: KV sweep: %s changed since start: left", key)
            return False
        payload = entry.to_json_bytes()
        msg_id = change_id(entry)
        headers = {"Nats-Msg-Id": msg_id, "Tattler-Uid": uid, "Tattler-Resource-Version": str(rev),
                   "KV-Operation": "DEL", EXPECTED_SEQUENCE: str(seq)}
        try:
            ack = await self._conn.js.publish(subject, payload, headers=headers)
        except nats.js.errors.APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                kv.conflicts += 1
                logger.debug("nats: KV sweep: %s was written by another writer meanwhile: left", key)
                return False
            raise
        kv.stored(subject, entry, ack.seq)
        logger.debug("nats: KV sweep: deleted %s (not in the list at revision %d)", key, rev)
        o = self.options
        if o.stream:
            try:
                await self._conn.js.publish(f"{o.prefix}.{key}", payload, headers={
                    "Nats-Msg-Id": msg_id, "Tattler-Change": entry.change.value, "Tattler-Kind": entry.kind,
                    "Tattler-Uid": uid, "Tattler-Resource-Version": str(rev)})
            except (nats.errors.Error, OSError) as exc:
                logger.warning("nats %s: the sweep's DELETE of %s not on stream %s: %s", self._conn.url, key,
                               o.stream, type(exc).__name__)
        return True

    async def _publish(self, ops: list[_Op], start: int) -> tuple[int | None, str]:
        """(asyncio) Publish ``ops[start:]`` pipelined; the index of the first not acknowledged, and why."""
        while start < len(ops):
            end = window_end(ops, start, _WINDOW) if self._kv is not None else min(start + _WINDOW, len(ops))
            failed_at, reason = await self._publish_window(ops, start, end)
            if failed_at is not None:
                return failed_at, reason
            start = end
        return None, ""

    async def _publish_window(self, ops: list[_Op], start: int, end: int) -> tuple[int | None, str]:
        """(asyncio) Publish ``ops[start:end]``, then await their acknowledgements together.

        KV puts whose compare-and-set lost (another writer was first) are
        decided again against the key's current message and, when still
        newer, put again (a few rounds at most); a window that cannot settle
        them counts as not acknowledged from the first of them.
        """
        if not self._conn.nc.is_connected:
            # Not into nats-py's reconnect buffer: the resend after the reconnect would double it.
            return start, "not connected"
        part = ops[start:end]
        failed_at, reason, lost = await self._send(part)
        rounds = 0
        while lost and self._kv is not None:
            rounds += 1
            why = await self._kv.reread(self._conn.js, [part[j].subject for j in lost])
            if why or rounds > ROUNDS:
                return start + lost[0], why or f"{ROUNDS} rounds of lost compare-and-sets"
            again, why, lost_again = await self._send([part[j] for j in lost])
            if again is not None:
                return start + lost[lost_again[0] if lost_again else again], why
            lost = [lost[j] for j in lost_again]
        return (None, "") if failed_at is None else (start + failed_at, reason)

    async def _send(self, part: list[_Op]) -> tuple[int | None, str, list[int]]:
        """(asyncio) Publish ``part`` pipelined, await the acknowledgements together, and read them.

        Returns the position of the first message not acknowledged (None: all
        were) and why, and the positions before it of the KV puts whose
        compare-and-set lost. A KV put the key's known version makes useless
        is not sent at all (:meth:`KvOrder.expect`).
        """
        import asyncio

        nats, _ = require_nats()
        nc = self._conn.nc
        kv = self._kv
        timeout = self.options.ack_timeout
        acks = self._acks
        if acks is None:
            acks = self._acks = _Acks(nc.new_inbox())
            await nc.subscribe(acks.prefix + "*", cb=acks.on_reply)
        window = acks.open(len(part))
        reason = ""
        sent = 0
        for op in part:
            if kv is not None and not op.stream:
                expected = kv.expect(op.subject, op.entry)
                if expected is None:
                    window.results[sent] = "skipped"
                    window.remaining -= 1
                    sent += 1
                    continue
                op.headers[EXPECTED_SEQUENCE] = expected  # type: ignore[index]  # KV ops always have headers
            try:
                await nc.publish(op.subject, op.payload, reply=acks.reply_to(window, sent), headers=op.headers)
            except (nats.errors.Error, OSError) as exc:
                reason = f"{type(exc).__name__} while publishing"
                break
            sent += 1
        window.expect(sent)
        try:
            await asyncio.wait_for(window.done.wait(), timeout)
        except TimeoutError:
            pass
        acks.close(window)
        lost: list[int] = []
        for i, result in enumerate(window.results[:sent]):
            op = part[i]
            if result is None:
                return i, reason or f"no acknowledgement within {timeout:g}s", lost
            if result is True or result == "duplicate":
                if not op.stream:
                    if kv is not None:  # a duplicate's sequence is its first copy's: an older hint, never wrong
                        kv.stored(op.subject, op.entry, ack_sequence(window.data[i]))
                elif result == "duplicate":
                    self.duplicates += 1
                continue
            if result == "skipped":
                continue
            code, description, err_code = result
            if err_code == WRONG_LAST_SEQUENCE and kv is not None and not op.stream:
                lost.append(i)
                continue
            if code is not None and code < 500:
                self.failed += 1
                logger.error("nats %s: %s refused for %s: %s", self._conn.url,
                             "stream message" if op.stream else "KV update", op.entry.key, description)
                continue
            return i, reason or f"{code} {description}", lost
        return (sent, reason, lost) if sent < len(part) else (None, "", lost)


class _Window:
    """The acknowledgements of one window of messages, by position: None until each arrives.

    A result is True (stored), ``"duplicate"`` (the stream had that message
    id already), ``"skipped"`` (not sent: the KV key holds a newer version)
    or ``(code, description, err_code)`` (refused; code None: no stream
    answered). ``data`` keeps an acknowledgement's bytes (its sequence is
    parsed only for KV puts).
    """

    __slots__ = ("base", "data", "done", "remaining", "results")

    def __init__(self, base: int, n: int) -> None:
        import asyncio

        self.base = base
        self.results: list[Any] = [None] * n
        self.data: list[bytes] = [b""] * n
        self.remaining = n
        self.done = asyncio.Event()

    def expect(self, sent: int) -> None:
        """Only ``sent`` messages went out: wait for those."""
        self.remaining -= len(self.results) - sent
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
            window.results[i] = (None, "no stream answered", None)  # no responders: the stream is not (yet) there
        elif b'"error"' not in data:
            # A PubAck ({"stream":"tattler", "seq":5,"duplicate": true}): no need to parse it.
            window.results[i] = "duplicate" if b'"duplicate"' in data else True
            window.data[i] = data
        else:
            try:
                answer = json.loads(msg.data)
            except ValueError:
                answer = {"error": {"description": "an answer that is not JSON"}}
            error = answer.get("error")
            if error:
                window.results[i] = (error.get("code"), str(error.get("description", "")), error.get("err_code"))
            else:
                window.results[i] = "duplicate" if answer.get("duplicate") else True
                window.data[i] = data
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
    async with open_connection(options.url, options=options.connect) as conn:
        proc = NatsProcessor(conn, options)
        await proc.setup()
        yield proc
