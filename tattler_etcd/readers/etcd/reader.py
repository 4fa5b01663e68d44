"""EtcdReader: a consistent list, then the watch, through compaction and restarts.

The state machine, per resource (each resource has its own key prefix and
its own watch, because the gateway's watch is one HTTP stream per range):

1. **List** every resource, paged, pinned to one revision R (the first page's
   header revision), so the list is one consistent snapshot. Entries are
   ``ADD``. The reader reports itself started when the list has been handed on.
2. **Watch** from R + 1 with ``prev_kv`` (a DELETE carries the object as it
   was) and progress notifications (a quiet resource still learns how far it
   is up to date). ``create_revision == mod_revision`` is an ``ADD``, else
   ``UPDATE``.
3. **Reconnect** on connection loss, an error line or a stream that ends:
   capped, jittered exponential back-off, then watch again from the last
   revision seen (an event's or a progress notification's). etcd keeps its
   revisions across restarts, so no event is lost and none is seen twice.
4. **Compaction** (the watch is canceled with ``compact_revision``, or a
   range answers code 11): relist that resource at a new revision, emit
   ``SNAPSHOT`` for every object present and ``DELETE`` for every object that
   vanished meanwhile, then watch again. The reader keeps a compact index
   (key -> uid, revision, apiVersion, kind), never the objects.
5. **Periodic relist** (optional): the same as 4, on a timer.

Two modes:

- *live* (default): a stream that ends is a lost connection; each watch
  message is handed on as soon as it is read.
- *finite* (``end_at_stream_end=True``, for replaying recordings): the end
  of a watch body is the end of that watch, on purpose: no reconnect, and the
  reader returns once every resource's watch has ended. Entries are handed on
  as they are read, as in live mode: a replay paces each recorded line at the
  (virtual) time it arrived, so the order across resources, and the batches,
  follow the recorded run (see :mod:`tattler_etcd.replay`).

All HTTP goes through one ``httpx.AsyncClient`` (see :mod:`.gateway`), which
the caller may inject. Cancellation is prompt and no thread is ever started.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import random
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

import httpx
import trio

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.errors import (
    BadKeyError,
    ConfigError,
    DecodeError,
    HistoryCompactedError,
    TransientReaderError,
)
from tattler_etcd.readers.etcd.gateway import (
    EtcdAuth,
    Gateway,
    KeyValue,
    RangePage,
    TLSFiles,
    endpoint_client,
    ssl_context,
)
from tattler_etcd.readers.etcd.keys import KeyMap, ResourceSpec, prefix_range_end, resolve_resource
from tattler_etcd.readers.etcd.revstore import RevisionStore
from tattler_etcd.stats import Counters

__all__ = ["DEFAULT_RESOURCES", "EtcdReader"]

log = logging.getLogger(__name__)

#: The seed's four resources.
DEFAULT_RESOURCES: tuple[str, ...] = ("pods", "nodes", "namespaces", "persistentvolumes")

_ETCD = SourceType.ETCD
_ADD, _UPDATE, _DELETE, _SNAPSHOT = ChangeType.ADD, ChangeType.UPDATE, ChangeType.DELETE, ChangeType.SNAPSHOT

#: What the index keeps per key: (uid, mod_revision, apiVersion, kind).
#: A tuple, not an object: 200,000 of them should cost tens of MB, not hundreds.
_Known = tuple[str, int, str, str]


@dataclasses.dataclass(eq=False)
class _Resource:
    """Per-resource state: where it lives, how far it has been delivered, and its index."""

    order: int
    spec: ResourceSpec
    key_prefix: bytes
    range_end: bytes
    revision: int = 0
    index: dict[bytes, _Known] = dataclasses.field(default_factory=dict)
    rng: random.Random = dataclasses.field(default_factory=random.Random)


class EtcdReader:
    """Feeds the pipeline straight from etcd's HTTP gateway.

    Args:
        endpoints: gateway URLs (``http://127.0.0.1:2379``), a list or a
            comma-separated string; a transport error moves to the next.
        resources: built-in plurals (``pods``), ``plural.group`` for others
            and custom resources (JSON values), or :class:`ResourceSpec`.
        prefix: the APIServer's ``--etcd-prefix``.
        name: the reader's name; counters are ``reader.<name>.*``.
        page_size: keys per range request while listing.
        once: stop after the initial list has been handed on.
        cacert, cert, key: TLS files, as etcdctl names them.
        insecure_skip_tls_verify: do not check etcd's certificate (etcdctl's flag).
        user, password: etcd's own authentication (etcdctl's ``--user``), see
            :class:`~tattler_etcd.readers.etcd.gateway.EtcdAuth`.
        client: an ``httpx.AsyncClient`` to use (not closed here): how a
            recording is made and replayed. Its TLS settings are its own.
        client_factory: makes the client instead (closed here on exit).
        api_path: the gateway's API path; None asks the server (``GET /version``).
        revision_file: remember per-resource revisions here and resume from
            them on start when etcd still has that history.
        relist_interval: relist every so many seconds (SNAPSHOT, DELETE for
            the vanished); ignored in finite mode, where time is not a signal.
        end_at_stream_end: finite mode (see the module docstring).
        watch_timeout: ask the gateway to end each watch after this many
            seconds (``Grpc-Timeout``); the reader then watches again at once
            (live) or treats it as the end of the watch (finite).
        backoff_initial, backoff_max: reconnect back-off bounds, seconds.
        seed: seeds the back-off jitter (per resource), for reproducible runs.
        progress: called with the number of objects listed so far after each
            page of the initial list, and with ``done=True`` at its end.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] = "http://127.0.0.1:2379",
        *,
        resources: Sequence[str | ResourceSpec] = DEFAULT_RESOURCES,
        prefix: str = "/registry",
        name: str = "etcd",
        page_size: int = 500,
        once: bool = False,
        cacert: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        insecure_skip_tls_verify: bool = False,
        user: str | None = None,
        password: str | None = None,
        client: httpx.AsyncClient | None = None,
        client_factory: Callable[[], httpx.AsyncClient] | None = None,
        api_path: str | None = None,
        revision_file: str | os.PathLike[str] | None = None,
        relist_interval: float | None = None,
        end_at_stream_end: bool = False,
        watch_timeout: float | None = None,
        backoff_initial: float = 0.25,
        backoff_max: float = 30.0,
        request_timeout: float = 30.0,
        seed: int | None = None,
        progress: Callable[..., None] | None = None,
    ) -> None:
        urls = [u.strip() for u in (endpoints.split(",") if isinstance(endpoints, str) else endpoints)]
        urls = [u for u in urls if u]
        if not urls:
            raise ConfigError("--etcd-endpoints: give at least one endpoint")
        if page_size < 1:
            raise ConfigError("--page-size: must be at least 1")
        if relist_interval is not None and relist_interval <= 0:
            raise ConfigError("--relist-interval: must be more than 0 seconds")
        if not 0 < backoff_initial <= backoff_max:
            raise ConfigError("back-off: need 0 < initial <= max")
        if client is not None and client_factory is not None:
            raise ConfigError("give an httpx client or a client factory, not both")
        specs = [r if isinstance(r, ResourceSpec) else resolve_resource(r) for r in resources]
        if not specs:
            raise ConfigError("--resources: give at least one resource")
        self.name = name
        self.tls = TLSFiles(cacert, cert, key, insecure_skip_tls_verify)
        self.endpoints = [endpoint_client(u, self.tls, api_path) for u in urls]
        self.keymap = KeyMap(prefix, specs)
        self.page_size = page_size
        self.once = once
        self.api_path = api_path
        self.relist_interval = relist_interval
        self.finite = end_at_stream_end
        self.watch_timeout = watch_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.request_timeout = request_timeout
        self.seed = seed
        self.progress = progress
        self._client = client
        self._client_factory = client_factory
        self._ssl = ssl_context(self.tls)  # checks the files now: a bad flag fails before any I/O
        if user is not None and client is not None:
            raise ConfigError("user: give it to the injected client's auth (EtcdAuth), not to the reader")
        self._auth = EtcdAuth(user, password or "", verify=self._ssl or True) if user is not None else None
        self._store = RevisionStore(revision_file, prefix=self.keymap.prefix) if revision_file else None
        self._resources = [
            _Resource(i, spec, self.keymap.key_prefix(spec), prefix_range_end(self.keymap.key_prefix(spec)))
            for i, spec in enumerate(specs)
        ]
        for r in self._resources:
            r.rng = random.Random(f"{seed}/{r.spec.segment}") if seed is not None else random.Random()
        self._counters = Counters()
        self._listed = 0

    # --- the Reader protocol ---------------------------------------------------------

    async def run(
        self,
        send: trio.MemorySendChannel[list[Entry]],
        counters: Counters,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """List, report started, then watch until cancelled (or done: ``once``, finite mode)."""
        self._counters = counters
        try:
            async with AsyncExitStack() as stack:
                gw = Gateway(
                    await self._open_client(stack), self.endpoints, api_path=self.api_path,
                    request_timeout=self.request_timeout,
                )
                await self._retrying(gw.discover, what="version")
                # --once wants the whole state, not what changed since the file.
                resumed = False if self.once else await self._resume(gw)
                if not resumed:
                    await self._initial_list(gw, send)
                task_status.started()
                if not self.once:
                    await self._follow_all(gw, send)
        finally:
            # close(), not aclose(): no checkpoint here, so an error of ours is
            # never replaced by a cancellation on the way out.
            send.close()
            if self._store is not None:
                self._store.flush(force=True)

    async def _open_client(self, stack: AsyncExitStack) -> httpx.AsyncClient:
        if self._client is not None:
            return self._client
        if self._client_factory is not None:
            client = self._client_factory()
        else:
            client = httpx.AsyncClient(
                verify=self._ssl if self._ssl is not None else True,
                timeout=self.request_timeout,
                auth=self._auth,
                # One watch stream per resource plus a range: keep them all open.
                limits=httpx.Limits(max_connections=len(self._resources) + 4, max_keepalive_connections=8),
            )
        await stack.enter_async_context(client)
        return client

    def _count(self, what: str, n: int = 1) -> None:
        self._counters.add(f"reader.{self.name}.{what}", n)

    # --- resume from the revision file -----------------------------------------------

    async def _resume(self, gw: Gateway) -> bool:
        if self._store is None:
            return False
        stored = self._store.load(r.spec.segment for r in self._resources)
        if stored is None:
            return False
        current = await self._retrying(gw.current_revision, what="revision")
        if max(stored.values()) > current:
            # etcd was restored from an older backup, or this is another cluster:
            # watching "from the future" would silently wait; list instead.
            log.warning("reader %s: revision file is ahead of etcd (%d > %d): listing everything",
                        self.name, max(stored.values()), current)
            return False
        for r in self._resources:
            r.revision = stored[r.spec.segment]
        log.info("reader %s: resuming from the revision file (%s)", self.name,
                 ", ".join(f"{r.spec.name}@{r.revision}" for r in self._resources))
        self._count("resumes")
        return True

    # --- listing ---------------------------------------------------------------------

    async def _initial_list(self, gw: Gateway, send: trio.MemorySendChannel[list[Entry]]) -> None:
        revision = 0
        for r in self._resources:
            # The first page fixes the revision; every later page, of every
            # resource, is read at it: one consistent snapshot.
            revision = await self._list_resource(gw, r, send, _ADD, revision)
            if not r.index:
                log.warning("reader %s: no %s under %s at revision %d (is --prefix right?)", self.name,
                            r.spec.name, r.key_prefix.decode("utf-8", "replace"), revision,
                            extra={"resource": r.spec.name})
        self._count("lists")
        if self.progress is not None:
            self.progress(self._listed, done=True)
        if self._store is not None:
            self._store.replace({r.spec.segment: r.revision for r in self._resources})
            self._store.flush()

    async def _list_resource(
        self,
        gw: Gateway,
        r: _Resource,
        send: trio.MemorySendChannel[list[Entry]],
        change: ChangeType,
        revision: int,
    ) -> int:
        """Range ``r`` at ``revision`` (0: now), hand on its entries, rebuild its index.

        With ``change`` SNAPSHOT (a relist) every object the index knew and
        the range no longer has becomes a DELETE. Returns the revision read at.
        The next page is fetched while this one is decoded and handed on (one
        page ahead, no more: bounded memory). If the pinned revision is
        compacted half-way (code 11), the resource is listed again at the
        latest revision, as a relist: SNAPSHOT, and DELETE for the vanished.
        """
        while True:
            new_index: dict[bytes, _Known] = {}
            pinned, compacted = await self._range_pages(gw, r, send, change, revision, new_index)
            if compacted is None:
                break
            self._count("compactions")
            log.warning("reader %s: %s: listing %s again", self.name, compacted, r.spec.name)
            # What this attempt already handed on counts as known, so a relist
            # can say which of those vanished.
            r.index.update(new_index)
            change, revision = _SNAPSHOT, 0
        if change is _SNAPSHOT:
            vanished = [k for k in r.index if k not in new_index]
            if vanished:
                deletes = [self._vanished_entry(k, r.index[k], pinned) for k in vanished]
                self._count("vanished", len(deletes))
                await self._hand_on(send, pinned, r, deletes)
        r.index = new_index
        r.revision = pinned
        return pinned

    async def _range_pages(
        self,
        gw: Gateway,
        r: _Resource,
        send: trio.MemorySendChannel[list[Entry]],
        change: ChangeType,
        revision: int,
        new_index: dict[bytes, _Known],
    ) -> tuple[int, HistoryCompactedError | None]:
        # One page of room, filled without a checkpoint: the fetcher hands page
        # k over and sends the request for page k+1 before the consumer runs,
        # so etcd reads k+1 while k is decoded and handed on. (A plain
        # ``await send`` lets the woken consumer decode first, and the next
        # request waits for it: no overlap.) At most two pages are held.
        pages_send, pages_recv = trio.open_memory_channel[RangePage](1)
        pinned = revision
        failure: Exception | None = None

        async def fetch() -> None:
            nonlocal pinned, failure
            async with pages_send:
                key = r.key_prefix
                try:
                    while True:
                        page = await self._retrying(
                            functools.partial(gw.range, key, r.range_end, limit=self.page_size, revision=pinned),
                            what=f"range {r.spec.name}", r=r,
                        )
                        if not pinned:
                            pinned = page.revision
                        try:
                            pages_send.send_nowait(page)
                        except trio.WouldBlock:
                            await pages_send.send(page)
                        last = page.last_key
                        if not page.more or last is None:
                            return
                        key = last + b"\0"
                except Exception as exc:  # noqa: BLE001 - re-raised by the caller, unwrapped (no ExceptionGroup)
                    failure = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetch)
            async with pages_recv:
                async for page in pages_recv:
                    entries = self._entries_from_kvs(r, page.kvs, change, new_index)
                    if change is _ADD:
                        self._listed += len(page)
                    if entries:
                        await self._hand_on(send, pinned, r, entries)
                    if self.progress is not None and change is _ADD:
                        self.progress(self._listed)
        if isinstance(failure, HistoryCompactedError):
            return pinned, failure
        if failure is not None:
            raise failure
        return pinned, None

    def _entries_from_kvs(
        self, r: _Resource, kvs: list[KeyValue], change: ChangeType, index: dict[bytes, _Known],
    ) -> list[Entry]:
        out = []
        for kv in kvs:
            entry = self._entry(r, kv.key, kv.value, change, kv.mod_revision)
            if entry is not None:
                index[kv.key] = (entry.uid, kv.mod_revision, entry.api_version, entry.kind)
                out.append(entry)
        self._count("listed", len(kvs))
        return out

    def _entry(self, r: _Resource, key: bytes, value: bytes, change: ChangeType, revision: int) -> Entry | None:
        """An Entry for one kv, or None (counted, logged with the key) when it is not an object."""
        try:
            self.keymap.parse(key, r.spec)
        except BadKeyError as exc:
            self._count("bad_keys")
            log.warning("reader %s: skipped: %s", self.name, exc)
            return None
        skey = key.decode("utf-8", "backslashreplace")
        try:
            if value[:1] == b"{":
                # JSON storage (custom resources): parse here, the whole object is
                # needed for its uid anyway.
                raw = json.loads(value)
                if not isinstance(raw, dict):
                    raise DecodeError("a JSON value that is not an object")
                entry = Entry.from_dict(raw, change=change, source=_ETCD, key=skey, resource_version=str(revision))
            else:
                entry = Entry.from_value(
                    value, change=change, source=_ETCD, key=skey, resource_version=str(revision),
                )
        except ValueError as exc:  # JSON that does not parse
            self._count("decode_errors")
            log.warning("reader %s: skipped %s: not valid JSON (%s)", self.name, skey, type(exc).__name__)
            return None
        except DecodeError as exc:
            self._count("decode_errors")
            log.warning("reader %s: skipped: %s", self.name, exc.with_key(skey))
            return None
        except Exception as exc:  # noqa: BLE001 - a codec bug must not stop the reader; the key says where
            self._count("decode_errors")
            log.warning("reader %s: skipped %s: %s while decoding", self.name, skey, type(exc).__name__)
            return None
        if not entry.uid:
            self._count("decode_errors")
            log.warning("reader %s: skipped %s: the object has no metadata.uid", self.name, skey)
            return None
        return entry

    def _vanished_entry(self, key: bytes, known: _Known, revision: int) -> Entry:
        """A DELETE for an object a relist no longer found: identity only (we keep no bodies).

        Its resourceVersion is the relist's revision: the object was deleted at
        or before it, and the exact revision went with the compacted history.
        """
        uid, _rev, api_version, kind = known
        ok = self.keymap.parse(key)
        meta: dict[str, Any] = {"name": ok.name, "uid": uid, "resourceVersion": str(revision)}
        if ok.namespace:
            meta["namespace"] = ok.namespace
        return Entry(
            change=_DELETE, source=_ETCD, uid=uid, api_version=api_version, kind=kind,
            namespace=ok.namespace, name=ok.name, resource_version=str(revision),
            key=key.decode("utf-8", "backslashreplace"),
            raw={"apiVersion": api_version, "kind": kind, "metadata": meta},
        )

    # --- watching --------------------------------------------------------------------

    async def _follow_all(self, gw: Gateway, send: trio.MemorySendChannel[list[Entry]]) -> None:
        if self.finite and self.relist_interval is not None:
            log.info("reader %s: periodic relist is off in finite mode", self.name)
        await self._each_resource(lambda r: self._follow(gw, r, send))

    async def _each_resource(self, fn: Callable[[_Resource], Awaitable[None]]) -> None:
        """Run ``fn`` for every resource concurrently; the first failure stops all and is raised as is."""
        failure: Exception | None = None

        async def one(r: _Resource, cancel: trio.CancelScope) -> None:
            nonlocal failure
            try:
                await fn(r)
            except Exception as exc:  # noqa: BLE001 - re-raised below, unwrapped (no ExceptionGroup)
                if failure is None:
                    failure = exc
                cancel.cancel()

        async with trio.open_nursery() as nursery:
            for r in self._resources:
                nursery.start_soon(one, r, nursery.cancel_scope)
        if failure is not None:
            raise failure

    async def _follow(
        self,
        gw: Gateway,
        r: _Resource,
        send: trio.MemorySendChannel[list[Entry]],
    ) -> None:
        """Watch one resource forever (live) or to the end of its streams (finite)."""
        attempt = 0
        interval = None if self.finite else self.relist_interval
        next_relist = trio.current_time() + interval if interval else math.inf
        while True:
            try:
                ended = False
                with trio.move_on_at(next_relist):
                    progressed, ended = await self._watch_once(gw, r, send)
                    if progressed:
                        attempt = 0
                    if not ended:
                        if self.finite:
                            return
                        raise TransientReaderError(f"etcd watch of {r.spec.name}: the stream ended")
                if ended:
                    if self.finite:
                        return  # the bound of a recorded stream: its end
                    continue  # our own Grpc-Timeout: watch again now, no back-off
                if trio.current_time() >= next_relist:
                    self._count("relists")
                    log.info("reader %s: periodic relist of %s", self.name, r.spec.name)
                    await self._list_resource(gw, r, send, _SNAPSHOT, 0)
                    self._note(r)
                    assert interval is not None
                    next_relist = trio.current_time() + interval
            except HistoryCompactedError as exc:
                self._count("compactions")
                log.warning("reader %s: %s: relisting %s", self.name, exc, r.spec.name)
                await self._list_resource(gw, r, send, _SNAPSHOT, 0)
                self._note(r)
                attempt = 0
            except TransientReaderError as exc:
                attempt += 1
                self._count("reconnects")
                delay = self._backoff(r, attempt)
                log.warning("reader %s: %s; watching %s again from revision %d in %.2fs",
                            self.name, exc, r.spec.name, r.revision + 1, delay)
                await trio.sleep(delay)

    async def _watch_once(
        self,
        gw: Gateway,
        r: _Resource,
        send: trio.MemorySendChannel[list[Entry]],
    ) -> tuple[bool, bool]:
        """One watch stream of ``r`` from ``r.revision + 1``.

        Messages already received together (a consumer that fell behind, a
        catch-up) go on as one chunk; a lone message goes on at once. Nothing
        waits for more input, so this adds no latency, and it holds only what
        one read brought in.

        Returns (progressed, timed_out): whether the stream moved ``r.revision``
        on, and whether it ended by our own ``watch_timeout`` (not a fault).
        Raises HistoryCompactedError or TransientReaderError, after handing on
        what came before the cancel or error line. (A broken connection can
        only surface while waiting for input, when nothing is pending.)
        """
        progressed = False
        entries: list[Entry] = []
        updates: dict[bytes, _Known | None] = {}
        top = r.revision

        async def flush() -> None:
            nonlocal entries, updates, progressed
            if entries:
                await send.send(entries)
                self._count("entries", len(entries))
            # Only once handed on: a cancelled send leaves the index and the revision as they were.
            for key, known in updates.items():
                if known is None:
                    r.index.pop(key, None)
                else:
                    r.index[key] = known
            if top > r.revision:
                r.revision = top
                progressed = True
                self._note(r)
            entries, updates = [], {}

        async with gw.watch(r.key_prefix, r.range_end, r.revision + 1, timeout=self.watch_timeout) as messages:
            async for msg in messages:
                kind = msg.kind
                if kind == "events":
                    for ev in msg.events:
                        top = max(top, ev.kv.mod_revision)
                        entry = self._event_entry(r, ev.type, ev.kv, ev.prev_kv, updates)
                        if entry is not None:
                            entries.append(entry)
                    self._count("events", len(msg.events))
                elif kind == "progress":
                    self._count("progress_notifications")
                    top = max(top, msg.revision)
                elif kind == "created":
                    pass
                elif kind == "canceled":
                    await flush()  # what came before the cancel is good
                    if msg.compact_revision:
                        raise HistoryCompactedError(
                            f"etcd watch of {r.spec.name} from revision {r.revision + 1}: compacted "
                            f"(history starts at {msg.compact_revision})"
                        )
                    raise TransientReaderError(f"etcd watch of {r.spec.name} canceled: {msg.detail or 'no reason'}")
                else:  # error line
                    # Our own Grpc-Timeout: etcd 3.4's gateway reports it as code 2
                    # "context deadline exceeded", later ones as code 4.
                    await flush()  # what came before the error is good
                    if self.watch_timeout is not None and (
                        msg.grpc_code == 4 or "deadline exceeded" in msg.detail
                    ):
                        return progressed, True
                    raise TransientReaderError(
                        f"etcd watch of {r.spec.name}: error line (grpc code {msg.grpc_code}): {msg.detail}"
                    )
                if not messages.buffered():
                    await flush()
            await flush()
        return progressed, False

    def _event_entry(
        self,
        r: _Resource,
        type_: str,
        kv: KeyValue,
        prev: KeyValue | None,
        updates: dict[bytes, _Known | None],
    ) -> Entry | None:
        """The entry for one event; the index change it implies goes to ``updates`` (read first)."""
        key = kv.key
        if type_ == "DELETE":
            known = updates[key] if key in updates else r.index.get(key)
            updates[key] = None
            if prev is not None and prev.value:
                return self._entry(r, key, prev.value, _DELETE, kv.mod_revision)
            # prev_kv is missing when its revision was compacted away: the
            # index still knows who it was.
            self._count("deletes_without_prev_kv")
            if known is None:
                log.warning("reader %s: DELETE of %s without its previous value, unknown here: not handed on",
                            self.name, key.decode("utf-8", "backslashreplace"))
                return None
            return self._vanished_entry(key, known, kv.mod_revision)
        change = _ADD if kv.create_revision == kv.mod_revision else _UPDATE
        entry = self._entry(r, key, kv.value, change, kv.mod_revision)
        updates[key] = None if entry is None else (entry.uid, kv.mod_revision, entry.api_version, entry.kind)
        return entry

    # --- handing on ------------------------------------------------------------------

    async def _hand_on(
        self,
        send: trio.MemorySendChannel[list[Entry]],
        revision: int,
        r: _Resource,
        entries: list[Entry],
    ) -> None:
        await send.send(entries)
        self._count("entries", len(entries))

    def _note(self, r: _Resource) -> None:
        if self._store is not None:
            self._store.note(r.spec.segment, r.revision)
            self._store.flush()

    # --- retrying --------------------------------------------------------------------

    def _backoff(self, r: _Resource, attempt: int) -> float:
        """Capped exponential back-off with jitter in [50%, 100%] of the step.

        Half the step is fixed so a restarted etcd is not hammered; half is
        random so many readers do not reconnect in lockstep.
        """
        step = min(self.backoff_max, self.backoff_initial * 2 ** min(attempt - 1, 30))
        return float(step * (0.5 + 0.5 * r.rng.random()))

    async def _retrying(self, call: Callable[[], Any], *, what: str, r: _Resource | None = None) -> Any:
        """Run a unary call, retrying transient errors with back-off.

        A compaction (HistoryCompactedError) and permanent errors pass through.
        """
        attempt = 0
        while True:
            try:
                return await call()
            except TransientReaderError as exc:
                attempt += 1
                self._count("retries")
                delay = self._backoff(r or self._resources[0], attempt)
                log.warning("reader %s: %s: %s; retrying in %.2fs", self.name, what, exc, delay)
                await trio.sleep(delay)
