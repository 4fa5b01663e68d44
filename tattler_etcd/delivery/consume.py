"""Read what :class:`~tattler_etcd.delivery.nats.NatsProcessor` delivered, on any machine.

Two feeds, both trio async iterators over :class:`~tattler_etcd.data.Entry`
(the same class and JSON form the pipeline has), both opened with
``async with``:

* :func:`open_state`: the KV state mirror. First every object the bucket
  holds (as last put: ADD, UPDATE or SNAPSHOT), then every change as it is
  put, DELETEs included. :attr:`EntryFeed.synced` is set once the initial
  state has been handed out: an informer served by NATS, with no load on the
  APIServer.
* :func:`open_stream`: the stream of changes, from its start, from a stream
  sequence or from a time; with a ``durable`` name the server remembers how
  far this consumer got, so a restarted consumer resumes there. Entries are
  acknowledged a chunk (up to 256 messages) at a time, when the feed fetches
  the next chunk: a consumer that stops inside one gets its rest again (at
  least once).

Both filter by resource (as ``--resources`` names them) and namespace; a
single resource is filtered by the server, several by the feed.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from tattler_etcd.data import Entry
from tattler_etcd.delivery._connection import Connection, ConnectOptions, open_connection, require_nats
from tattler_etcd.delivery.subjects import escape_token, resource_token
from tattler_etcd.errors import ConfigError, DeliveryError

__all__ = ["EntryFeed", "open_state", "open_stream"]

logger = logging.getLogger("tattler_etcd.delivery")

#: Most messages carried from asyncio to trio in one crossing.
_CHUNK = 256
#: Seconds one fetch waits for messages.
_FETCH_WAIT = 5.0
#: After this many empty fetches in a row, ask whether the consumer still exists.
_CHECK_EVERY = 1
#: Seconds between attempts while the server cannot be read.
_RETRY_WAIT = 1.0
#: Seconds an ephemeral consumer outlives its reader (the server then deletes it).
_INACTIVE = 300.0


class _Filter:
    """Which keys (``<resource>.<namespace>.<name>`` tokens) a feed wants, and the server-side pattern."""

    def __init__(self, resources: Sequence[str] | None, namespace: str | None) -> None:
        self.resources = frozenset(resource_token(r) for r in resources) if resources else None
        if resources is not None and not self.resources:
            raise ConfigError("resources: give at least one resource, or None for all")
        self.namespace = (escape_token(namespace) if namespace else "_") if namespace is not None else None
        res = next(iter(self.resources)) if self.resources and len(self.resources) == 1 else "*"
        ns = self.namespace or "*"
        self.pattern = ">" if res == ns == "*" else f"{res}.{ns}.*"

    def wants(self, key: str) -> bool:
        res, _, rest = key.partition(".")
        if self.resources is not None and res not in self.resources:
            return False
        return self.namespace is None or rest.partition(".")[0] == self.namespace


class EntryFeed:
    """A trio async iterator over the entries of a feed (see the module docstring).

    Attributes:
        synced: set once everything that was there when the feed opened has
            been handed out (the bucket's initial state; the stream's backlog).
        skipped: messages that were not an entry's JSON (logged, not handed out).
    """

    def __init__(self, fetch: Callable[[], Awaitable[list[Any]]], *, until_synced: bool) -> None:
        self._fetch = fetch
        self._buffer: list[Any] = []
        self._pos = 0
        self._until_synced = until_synced
        self.synced = trio.Event()
        self.skipped = 0

    @property
    def buffered(self) -> int:
        """Entries (and markers) fetched and not handed out yet: 0 means the next one may wait."""
        return len(self._buffer) - self._pos

    def __aiter__(self) -> EntryFeed:
        return self

    async def __anext__(self) -> Entry:
        while True:
            if self._pos == len(self._buffer):
                if self._until_synced and self.synced.is_set():
                    raise StopAsyncIteration
                self._buffer = await self._fetch()
                self._pos = 0
                continue
            item = self._buffer[self._pos]
            self._pos += 1
            if item is None:
                self.synced.set()
                continue
            if isinstance(item, Entry):
                return item
            self.skipped += 1


def _entry(data: bytes, where: str) -> Entry | str:
    try:
        return Entry.from_json_dict(json.loads(data))
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning("nats: skipped %s: not an entry's JSON (%s)", where, type(exc).__name__)
        return where


class _Pull:
    """(asyncio) A pull consumer that outlives the server: made again where it stopped when it is lost.

    nats-py's own KV watcher (an ordered push consumer without heartbeats)
    never notices that a restarted server lost it; a pull consumer's fetch
    fails or keeps timing out instead, and then this one asks the server
    whether the consumer is still there, and makes a new one from the stream
    sequence after the last message handed out (a durable one by its name:
    the server keeps its place).
    """

    def __init__(self, conn: Connection, stream: str, subject: str, config: Any, durable: str | None) -> None:
        self.conn = conn
        self.stream = stream
        self.subject = subject
        self.config = config
        self.durable = durable
        self.sub: Any = None
        self.last_seq = 0
        self.to_ack: list[Any] = []

    async def subscribe(self) -> None:
        from nats.js.api import DeliverPolicy

        config = self.config
        if self.last_seq and not self.durable:
            config = dataclasses.replace(config, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                         opt_start_seq=self.last_seq + 1, opt_start_time=None)
        self.sub = await self.conn.js.pull_subscribe(self.subject, durable=self.durable, stream=self.stream,
                                                     config=config)

    async def pending(self) -> int:
        return int((await self.sub.consumer_info()).num_pending)

    async def fetch(self) -> list[Any]:
        """The next messages (at least one), acknowledging the previous ones first (durable only)."""
        nats, _ = require_nats()
        import asyncio

        for m in self.to_ack:
            try:
                await m.ack()
            except nats.errors.Error as exc:  # redelivered later: at least once
                logger.debug("nats: ack: %s", type(exc).__name__)
        self.to_ack.clear()
        quiet = 0
        while True:
            try:
                if self.sub is None:
                    await self.subscribe()
                    logger.warning("nats %s: consumer on %s made again from sequence %d",
                                   self.conn.url, self.stream, self.last_seq + 1)
                msgs = await self.sub.fetch(_CHUNK, timeout=_FETCH_WAIT)
            except nats.errors.TimeoutError:
                quiet += 1
                if quiet % _CHECK_EVERY == 0 and not await self._alive():
                    self.sub = None
                continue
            except (nats.errors.Error, OSError) as exc:
                logger.warning("nats %s: reading %s: %s; trying again", self.conn.url, self.stream,
                               type(exc).__name__)
                await self._drop()
                await asyncio.sleep(_RETRY_WAIT)
                continue
            if msgs:
                self.last_seq = msgs[-1].metadata.sequence.stream
                if self.durable:
                    self.to_ack.extend(msgs)
                return list(msgs)

    async def _alive(self) -> bool:
        nats, _ = require_nats()
        try:
            await self.sub.consumer_info()
        except nats.js.errors.NotFoundError:
            await self._drop()
            return False
        except (nats.errors.Error, OSError):
            pass  # the server is not there yet: ask again later
        return True

    async def _drop(self) -> None:
        sub, self.sub = self.sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # noqa: BLE001 - the consumer may be gone with the server
                logger.debug("nats: unsubscribe: %s", type(exc).__name__)

    async def close(self) -> None:
        if not self.durable:
            await self._drop()


@asynccontextmanager
async def _open_pull(conn: Connection, stream: str, subject: str, config: Any, durable: str | None,
                     what: str) -> AsyncIterator[_Pull]:
    nats, _ = require_nats()
    pull = _Pull(conn, stream, subject, config, durable)
    try:
        await conn.call(pull.subscribe)
    except nats.js.errors.NotFoundError as exc:
        raise DeliveryError(f"nats {conn.url}: no {what}") from exc
    try:
        yield pull
    finally:
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + 5.0
            try:
                await conn.call(pull.close)
            except Exception as exc:  # noqa: BLE001 - best effort
                logger.debug("nats: closing a consumer: %s", type(exc).__name__)


@asynccontextmanager
async def open_state(
    url: str, *, bucket: str = "tattler-state", resources: Sequence[str] | None = None,
    namespace: str | None = None, until_synced: bool = False, connection: Connection | None = None,
    options: ConnectOptions | None = None,
) -> AsyncIterator[EntryFeed]:
    """The KV state mirror as a feed: the initial state, then every change.

    ``namespace=""`` means cluster-scoped objects only. With ``until_synced``
    the feed ends once the initial state has been handed out. ``connection``
    reuses an open connection instead of opening one to ``url``; ``options``
    (or the URL's query) give TLS and credentials. The feed goes on through a
    nats-server restart, from where it was.

    Raises:
        ConfigError: the [nats] extra is missing, or an empty resource list.
        DeliveryError: the server cannot be reached, or has no such bucket.
    """
    require_nats()
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    flt = _Filter(resources, namespace)
    prefix = f"$KV.{bucket}."
    config = ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, ack_policy=AckPolicy.NONE,
                            inactive_threshold=_INACTIVE)
    async with _maybe_connection(url, connection, options) as conn, \
            _open_pull(conn, f"KV_{bucket}", prefix + flt.pattern, config, None, f"KV bucket {bucket!r}") as pull:
        initial = True

        async def fetch() -> list[Any]:
            nonlocal initial
            if initial and pull.last_seq == 0 and await pull.pending() == 0:
                initial = False
                return [None]
            out: list[Any] = []
            for m in await pull.fetch():
                key = m.subject[len(prefix):]
                deleted = bool(m.headers) and m.headers.get("KV-Operation") in ("DEL", "PURGE")
                if flt.wants(key) and not (initial and deleted):
                    # A delete marker from us carries the DELETE entry; one without (another
                    # client's, a purge) cannot be made an entry: skipped.
                    out.append(_entry(m.data, f"{bucket}/{key}") if m.data else f"{bucket}/{key}")
                if initial and m.metadata.num_pending == 0:
                    initial = False
                    out.append(None)
            return out

        yield EntryFeed(lambda: conn.call(fetch), until_synced=until_synced)


@asynccontextmanager
async def open_stream(
    url: str, *, stream: str = "tattler", prefix: str = "tattler", resources: Sequence[str] | None = None,
    namespace: str | None = None, start_sequence: int | None = None,
    start_time: datetime.datetime | None = None, durable: str | None = None,
    until_synced: bool = False, connection: Connection | None = None, options: ConnectOptions | None = None,
) -> AsyncIterator[EntryFeed]:
    """The stream of changes as a feed.

    Where it starts: ``start_sequence`` (a stream sequence), else
    ``start_time``, else the stream's first message. A ``durable`` consumer
    that exists already resumes where it was acknowledged (the start options
    apply only when it is made). ``until_synced`` ends the feed once it has
    caught up with the stream. ``connection`` and ``options``: as for
    :func:`open_state`. The feed goes on through a nats-server restart, from
    where it was.

    Raises:
        ConfigError: the [nats] extra is missing, both start options, or an empty resource list.
        DeliveryError: the server cannot be reached, or has no such stream.
    """
    require_nats()
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    if start_sequence is not None and start_time is not None:
        raise ConfigError("give start_sequence or start_time, not both")
    flt = _Filter(resources, namespace)
    if start_sequence is not None:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_sequence)
    elif start_time is not None:
        when = start_time if start_time.tzinfo else start_time.replace(tzinfo=datetime.UTC)
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=when)
    else:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    config.ack_policy = AckPolicy.EXPLICIT if durable else AckPolicy.NONE
    if not durable:
        config.inactive_threshold = _INACTIVE
    start = len(prefix) + 1
    async with _maybe_connection(url, connection, options) as conn, \
            _open_pull(conn, stream, f"{prefix}.{flt.pattern}", config, durable, f"stream {stream!r}") as pull:
        first = True

        async def fetch() -> list[Any]:
            nonlocal first
            if first:
                first = False
                if await pull.pending() == 0:
                    return [None]
            out: list[Any] = []
            msgs = await pull.fetch()
            for m in msgs:
                if flt.wants(m.subject[start:]):
                    out.append(_entry(m.data, f"{stream}/{m.metadata.sequence.stream}"))
            if msgs[-1].metadata.num_pending == 0:
                out.append(None)
            return out

        yield EntryFeed(lambda: conn.call(fetch), until_synced=until_synced)


@asynccontextmanager
async def _maybe_connection(url: str, connection: Connection | None,
                            options: ConnectOptions | None) -> AsyncIterator[Connection]:
    if connection is not None:
        yield connection
    else:
        async with open_connection(url, options=options) as conn:
            yield conn
