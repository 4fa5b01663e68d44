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

import datetime
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from tattler_etcd.data import Entry
from tattler_etcd.delivery._connection import Connection, open_connection, require_nats
from tattler_etcd.delivery.subjects import escape_token, resource_token
from tattler_etcd.errors import ConfigError, DeliveryError

__all__ = ["EntryFeed", "open_state", "open_stream"]

logger = logging.getLogger("tattler_etcd.delivery")

#: Most messages carried from asyncio to trio in one crossing.
_CHUNK = 256


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


@asynccontextmanager
async def open_state(
    url: str, *, bucket: str = "tattler-state", resources: Sequence[str] | None = None,
    namespace: str | None = None, until_synced: bool = False, connection: Connection | None = None,
) -> AsyncIterator[EntryFeed]:
    """The KV state mirror as a feed: the initial state, then every change.

    ``namespace=""`` means cluster-scoped objects only. With ``until_synced``
    the feed ends once the initial state has been handed out. ``connection``
    reuses an open connection instead of opening one to ``url``.

    Raises:
        ConfigError: the [nats] extra is missing, or an empty resource list.
        DeliveryError: the server cannot be reached, or has no such bucket.
    """
    nats, _ = require_nats()
    flt = _Filter(resources, namespace)
    async with _maybe_connection(url, connection) as conn:
        try:
            kv = await conn.call(conn.js.key_value, bucket)
            watcher = await conn.call(kv.watch, flt.pattern)
        except nats.js.errors.NotFoundError as exc:
            raise DeliveryError(f"nats {conn.url}: no KV bucket {bucket!r}") from exc
        initial = True

        async def fetch() -> list[Any]:
            import asyncio

            nonlocal initial
            out: list[Any] = []
            item = await watcher._updates.get()
            while True:
                if item is None:
                    initial = False
                    out.append(None)
                elif not isinstance(item, nats.js.kv.KeyValue.Entry):
                    break  # the watcher was stopped
                elif initial and item.operation is not None:
                    pass  # a deleted key is not part of the initial state
                elif flt.wants(item.key):
                    out.append(_entry(item.value, f"{bucket}/{item.key}") if item.value else
                               f"{bucket}/{item.key}")
                if len(out) >= _CHUNK:
                    break
                try:
                    item = watcher._updates.get_nowait()
                except asyncio.QueueEmpty:
                    break
            return out

        feed = EntryFeed(lambda: conn.call(fetch), until_synced=until_synced)
        try:
            yield feed
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await conn.call(watcher.stop)
                except Exception as exc:  # noqa: BLE001 - stopping is best effort
                    logger.debug("nats: stopping the KV watcher: %s", type(exc).__name__)


@asynccontextmanager
async def open_stream(
    url: str, *, stream: str = "tattler", prefix: str = "tattler", resources: Sequence[str] | None = None,
    namespace: str | None = None, start_sequence: int | None = None,
    start_time: datetime.datetime | None = None, durable: str | None = None,
    until_synced: bool = False, connection: Connection | None = None,
) -> AsyncIterator[EntryFeed]:
    """The stream of changes as a feed.

    Where it starts: ``start_sequence`` (a stream sequence), else
    ``start_time``, else the stream's first message. A ``durable`` consumer
    that exists already resumes where it was acknowledged (the start options
    apply only when it is made). ``until_synced`` ends the feed once it has
    caught up with the stream.

    Raises:
        ConfigError: the [nats] extra is missing, both start options, or an empty resource list.
        DeliveryError: the server cannot be reached, or has no such stream.
    """
    nats, _ = require_nats()
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
        config.inactive_threshold = 300.0
    async with _maybe_connection(url, connection) as conn:
        try:
            sub = await conn.call(conn.js.pull_subscribe, f"{prefix}.{flt.pattern}", durable=durable,
                                  stream=stream, config=config)
        except nats.js.errors.NotFoundError as exc:
            raise DeliveryError(f"nats {conn.url}: no stream {stream!r}") from exc
        to_ack: list[Any] = []
        start = len(prefix) + 1
        first = True

        async def fetch() -> list[Any]:
            nonlocal first
            for m in to_ack:
                await m.ack()
            to_ack.clear()
            if first:
                first = False
                if (await sub.consumer_info()).num_pending == 0:
                    return [None]
            while True:
                try:
                    msgs = await sub.fetch(_CHUNK, timeout=5.0)
                except nats.errors.TimeoutError:
                    continue
                out: list[Any] = []
                for m in msgs:
                    if durable:
                        to_ack.append(m)
                    if flt.wants(m.subject[start:]):
                        out.append(_entry(m.data, f"{stream}/{m.metadata.sequence.stream}"))
                if msgs and msgs[-1].metadata.num_pending == 0:
                    out.append(None)
                if out:
                    return out

        feed = EntryFeed(lambda: conn.call(fetch), until_synced=until_synced)
        try:
            yield feed
        finally:
            with trio.CancelScope(shield=True):
                try:
                    if not durable:
                        await conn.call(sub.unsubscribe)
                except Exception as exc:  # noqa: BLE001 - best effort
                    logger.debug("nats: closing the stream consumer: %s", type(exc).__name__)


@asynccontextmanager
async def _maybe_connection(url: str, connection: Connection | None) -> AsyncIterator[Connection]:
    if connection is not None:
        yield connection
    else:
        async with open_connection(url) as conn:
            yield conn
