"""The APIServer reader: client-go's reflector, reading into tattler entries.

One loop per resource type, one connection each (not one per consumer). Each
loop gets the initial state, then watches; the state machine copies the
reflector's, and the reasons are the reflector's too:

* **Initial state.** A streaming WatchList when the server has it (one
  request; the state arrives as ADDED events and ends at the bookmark
  annotated ``k8s.io/initial-events-end``), else a paged LIST (``limit`` /
  ``continue``) followed by a WATCH from the list's version. A server that
  refuses WatchList (400/422), or ends the stream before the end bookmark, is
  asked with LIST from then on, for that resource.
* **Watch.** From the last version seen (events and bookmarks alike), with a
  randomised ``timeoutSeconds`` so that many readers do not reconnect in step.
  Bookmarks are requested, never assumed. A watch that ends at once with
  nothing in it counts as a failure, so a broken server cannot make us spin.
* **410 Gone / Expired** (our version was compacted away): relist from a
  consistent read. The relist emits ``SNAPSHOT`` for every object still there
  and ``DELETE`` (carrying the last state we saw) for those that vanished.
* **429** waits for ``Retry-After``; other transient failures wait a jittered
  exponential backoff, capped (:class:`Backoff`). **401/403** stop the reader
  with :class:`~tattler_etcd.errors.AccessDeniedError` naming the resource.
* **Periodic relist** (``relist_interval``), like the etcd reader's: SNAPSHOT
  and DELETE entries, from the last version seen.
* **Bookmark persistence** (``bookmark_store``): the last version is saved
  every so often; a restarted reader watches from it without relisting. If the
  server has compacted it, the 410 path relists (no DELETE entries then: a
  fresh process does not know what vanished while it was down).

Replays: with ``follow=False`` the end of a watch body is the end of that
resource (no reconnect), and resources are read one after the other in the
order given, so the emitted order never depends on trio's scheduling.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import httpx
import trio

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.errors import (
    CodecError,
    ConfigError,
    HistoryCompactedError,
    TransientReaderError,
)
from tattler_etcd.readers.apiserver.bookmarks import BookmarkStore
from tattler_etcd.readers.apiserver.client import (
    APIClient,
    ResourceRef,
    WatchListRejected,
    WatchObject,
    WatchStream,
    pending_error,
)
from tattler_etcd.readers.apiserver.config import ClusterConfig
from tattler_etcd.readers.apiserver.rv import list_params, list_resource_version, watch_params
from tattler_etcd.stats import Counters

__all__ = ["INITIAL_EVENTS_END", "APIServerReader", "Backoff"]

log = logging.getLogger(__name__)

#: The annotation on the bookmark that closes a WatchList's initial state.
INITIAL_EVENTS_END = "k8s.io/initial-events-end"

#: client-go's minimum watch timeout; each watch asks for between one and two
#: times this, at random, so that readers started together drift apart.
MIN_WATCH_TIMEOUT = 300.0

#: A watch that ends sooner than this with no event is treated as a failure
#: (client-go does the same), so a server that closes at once cannot make us spin.
SHORT_WATCH = 1.0

#: Save the resume version at most this often (bookmarks may arrive every few
#: seconds per resource; a write per bookmark would be waste).
SAVE_INTERVAL = 10.0

#: Never wait longer than this for a server's Retry-After.
MAX_RETRY_AFTER = 600.0

_CHANGES = {"ADDED": ChangeType.ADD, "MODIFIED": ChangeType.UPDATE, "DELETED": ChangeType.DELETE}


@dataclass
class Backoff:
    """Jittered, capped exponential backoff, reset after a quiet spell.

    The defaults are client-go's reflector's: 0.8 s doubling to 30 s, each
    delay stretched by up to 100% at random (so readers that failed together
    do not retry together), and back to 0.8 s after two minutes without a
    failure. ``rand`` and the clock (trio's) are injectable for tests.
    """

    initial: float = 0.8
    cap: float = 30.0
    factor: float = 2.0
    jitter: float = 1.0
    reset_after: float = 120.0
    rand: Callable[[], float] = field(default=random.random, repr=False)
    _current: float = field(default=0.0, repr=False)
    _last: float = field(default=-math.inf, repr=False)

    def next_delay(self, now: float) -> float:
        """The delay before the next attempt, for a failure at ``now``."""
        if now - self._last > self.reset_after:
            self._current = 0.0
        self._last = now
        self._current = self.initial if self._current == 0.0 else min(self.cap, self._current * self.factor)
        return self._current * (1.0 + self.jitter * self.rand())

    def reset(self) -> None:
        self._current = 0.0


class _Loop:
    """The state machine of one resource type."""

    def __init__(self, reader: APIServerReader, ref: ResourceRef, send: trio.MemorySendChannel[list[Entry]],
                 counters: Counters) -> None:
        self.r = reader
        self.ref = ref
        self.send = send
        self.counters = counters
        self.prefix = f"reader.{reader.name}"
        self.last_rv = ""
        self.unavailable = False
        self.known: dict[str, Entry] = {}
        self.synced_once = False
        self.synced = trio.Event()
        self.need_list = True
        self.done = False
        self.use_watch_list = reader.watch_list is not False
        self.protobuf = reader.content_type == "protobuf"
        self.backoff = reader.backoff_factory()
        self.next_relist = math.inf
        self._pending: tuple[contextlib.AsyncExitStack, AsyncIterator[list[tuple[str, WatchObject]]]] | None = None
        self._saved_rv = ""
        self._next_save = -math.inf
        self._pending_rest: tuple[list[tuple[str, WatchObject]], Exception | None] | None = None

    # -- entries -----------------------------------------------------------

    def _count(self, what: str, n: int = 1) -> None:
        self.counters.add(f"{self.prefix}.{what}", n)

    def _key(self, namespace: str | None, name: str) -> str:
        return f"{self.ref.name}/{namespace}/{name}" if namespace else f"{self.ref.name}/{name}"

    def _entry(self, obj: WatchObject, change: ChangeType) -> Entry | None:
        try:
            if isinstance(obj, bytes):
                entry = Entry.from_value(obj, change=change, source=SourceType.APISERVER)
            elif isinstance(obj, dict):
                entry = Entry.from_dict(obj, change=change, source=SourceType.APISERVER)
            else:
                raise CodecError("an event without an object")
        except CodecError as exc:
            self._count("decode_errors")
            log.warning("%s: skipped an object that cannot be read: %s", self.ref.name, exc)
            return None
        entry.key = self._key(entry.namespace, entry.name)
        return entry

    def _deleted(self, old: Entry) -> Entry:
        value = old.value
        return Entry(
            change=ChangeType.DELETE, source=SourceType.APISERVER, uid=old.uid, api_version=old.api_version,
            kind=old.kind, namespace=old.namespace, name=old.name, resource_version=old.resource_version,
            key=old.key, value=value, raw=None if value is not None else old.raw,
        )

    async def _emit(self, entries: list[Entry]) -> None:
        if entries:
            self._count("entries", len(entries))
            await self.send.send(entries)

    # -- the loop ----------------------------------------------------------

    async def _wait(self, exc: TransientReaderError) -> None:
        self._count("retries")
        now = trio.current_time()
        delay = self.backoff.next_delay(now)
        if exc.retry_after is not None:
            delay = min(exc.retry_after, MAX_RETRY_AFTER)
        log.warning("%s: %s; retrying in %.1fs", self.ref.name, exc, delay)
        await trio.sleep(delay)

    async def sync(self) -> None:
        """Hand on the initial state (or resume from a stored version), retrying until done."""
        if self.r.bookmark_store is not None and not self.synced_once:
            rv = await self.r.bookmark_store.load(self.ref.name)
            if rv:
                log.info("%s: resuming from stored resourceVersion %s", self.ref.name, rv)
                self._count("resumed")
                self.last_rv = self._saved_rv = rv
                self.need_list = False
                self._mark_synced()
                return
        await self._relist_until_done()

    async def _relist_until_done(self) -> None:
        expired_in_a_row = 0
        while True:
            try:
                if self.use_watch_list:
                    await self._watch_list()
                else:
                    await self._list()
                self.need_list = False
                return
            except HistoryCompactedError as exc:
                self._count("expired")
                log.info("%s: %s; relisting from a consistent read", self.ref.name, exc)
                self.unavailable = True
                expired_in_a_row += 1
                if expired_in_a_row > 1:  # relist at once the first time, as client-go does
                    await self._wait(TransientReaderError(str(exc)))
            except WatchListRejected as exc:
                log.info("%s: the server refused WatchList (%s); using LIST", self.ref.name, exc)
                self._count("watchlist_fallbacks")
                self.use_watch_list = False
            except TransientReaderError as exc:
                await self._wait(exc)

    def _mark_synced(self) -> None:
        self.synced_once = True
        self.synced.set()
        if self.r.relist_interval:
            self.next_relist = trio.current_time() + self.r.relist_interval

    async def follow(self) -> None:
        """Watch (relisting when needed) until cancelled, or, without ``follow``, one watch."""
        try:
            while not self.done:
                if self.need_list:
                    await self._relist_until_done()
                    continue
                try:
                    ended = await self._watch()
                except HistoryCompactedError as exc:
                    self._count("expired")
                    log.info("%s: %s; relisting", self.ref.name, exc)
                    self.unavailable = True
                    self.need_list = True
                    continue
                except TransientReaderError as exc:
                    await self._wait(exc)
                    continue
                if ended == "relist":
                    self._count("periodic_relists")
                    self.need_list = True
                elif not self.r.follow:
                    self.done = True
        finally:
            await self._close_pending()
            await self._save(force=True)

    async def _close_pending(self) -> None:
        if self._pending is not None:
            stack, _ = self._pending
            self._pending = None
            with trio.CancelScope(shield=True):
                await stack.aclose()

    # -- LIST --------------------------------------------------------------

    async def _list(self) -> None:
        rv = list_resource_version(self.last_rv, unavailable=self.unavailable,
                                   consistent_first=self.r.consistent_first_list)
        change = ChangeType.SNAPSHOT if self.synced_once else ChangeType.ADD
        self._count("lists")
        seen: set[str] = set()
        token = ""
        while True:
            params = list_params(rv, limit=self.r.page_size or None, continue_token=token or None)
            try:
                page = await self.r.client.list_page(self.ref, params, protobuf=self.protobuf)
            except HistoryCompactedError:
                if not token:
                    raise
                # The continue token expired mid-list (client-go: relist from a
                # consistent read). Pages already handed on are re-confirmed as
                # SNAPSHOT: no object is announced twice as ADD.
                self._count("expired")
                log.info("%s: the list's continue token expired; restarting the list", self.ref.name)
                rv, token = "", ""
                change = ChangeType.SNAPSHOT
                seen.clear()
                continue
            entries: list[Entry] = []
            for obj in page.items:
                entry = self._entry(obj, change)
                if entry is None:
                    continue
                seen.add(entry.key)
                self.known[entry.key] = entry
                entries.append(entry)
            await self._emit(entries)
            token = page.continue_token
            if not token:
                self.last_rv = page.resource_version or self.last_rv
                break
        await self._finish_initial(seen)

    async def _finish_initial(self, seen: set[str]) -> None:
        if not self.synced_once and not seen:
            log.warning("%s: the server has no %s (an empty first list)", self.ref.name, self.ref.name,
                        extra={"resource": self.ref.name})
        if self.synced_once:
            vanished = [key for key in self.known if key not in seen]
            gone = [self._deleted(self.known.pop(key)) for key in vanished]
            for i in range(0, len(gone), self.r.page_size or 500):
                await self._emit(gone[i : i + (self.r.page_size or 500)])
        self.unavailable = False
        self.backoff.reset()
        self._mark_synced()
        await self._save(force=True)

    # -- WatchList -----------------------------------------------------------

    async def _watch_list(self) -> None:
        rv = "" if self.unavailable else self.last_rv
        change = ChangeType.SNAPSHOT if self.synced_once else ChangeType.ADD
        timeout = self._watch_timeout()
        params = watch_params(rv, timeout_seconds=timeout, send_initial_events=True)
        self._count("watch_lists")
        stack = contextlib.AsyncExitStack()
        try:
            stream: WatchStream = await stack.enter_async_context(
                self.r.client.watch(self.ref, params, protobuf=self.protobuf))
            chunks = stream.chunks()
            await stack.enter_async_context(contextlib.aclosing(chunks))  # type: ignore[type-var]
            initial: list[Entry] = []
            end_rv: str | None = None
            async for chunk in chunks:
                for i, (kind, obj) in enumerate(chunk):
                    if kind == "BOOKMARK":
                        bookmark_rv, is_end = self._bookmark(obj)
                        if is_end:
                            end_rv = bookmark_rv
                            # What followed the end bookmark in the same read is
                            # already the watch: keep it for follow().
                            self._pending_rest = (list(chunk[i + 1 :]), pending_error(chunk))
                            break
                    elif kind in _CHANGES:
                        entry = self._entry(obj, change)
                        if entry is not None:
                            initial.append(entry)
                    else:
                        self._unknown(kind)
                if end_rv is not None:
                    break
                err = pending_error(chunk)
                if err is not None:
                    raise err
            if end_rv is None:
                raise WatchListRejected(f"watch {self.ref.name}: the stream ended before the "
                                        f"{INITIAL_EVENTS_END} bookmark")
        except BaseException:
            with trio.CancelScope(shield=True):
                await stack.aclose()
            raise
        seen: set[str] = set()
        for entry in initial:
            seen.add(entry.key)
            self.known[entry.key] = entry
        size = self.r.page_size or 500
        for i in range(0, len(initial), size):
            await self._emit(initial[i : i + size])
        self.last_rv = end_rv or self.last_rv
        self._pending = (stack, chunks)
        await self._finish_initial(seen)

    # -- WATCH ---------------------------------------------------------------

    def _watch_timeout(self) -> int:
        return int(self.r.min_watch_timeout * (1.0 + self.r.rand()))

    def _bookmark(self, obj: WatchObject) -> tuple[str, bool]:
        """(resourceVersion, is the initial-events-end bookmark) of a BOOKMARK object."""
        if isinstance(obj, bytes):
            from tattler_etcd import codec

            try:
                doc = codec.decode(obj)
            except CodecError:
                return codec.peek(obj).resource_version, False
        elif isinstance(obj, dict):
            doc = obj
        else:
            return "", False
        meta = doc.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        return str(meta.get("resourceVersion") or ""), annotations.get(INITIAL_EVENTS_END) == "true"

    def _unknown(self, kind: str) -> None:
        self._count("unknown_events")
        log.warning("%s: skipped a watch event of unknown type %r", self.ref.name, kind[:40])

    async def _consume(self, chunks: AsyncIterator[list[tuple[str, WatchObject]]]) -> int:
        n = 0
        rest = self._pending_rest
        if rest is not None:
            self._pending_rest = None
            events, err = rest
            n += await self._apply(events)
            if err is not None:
                raise err
        async for chunk in chunks:
            n += await self._apply(chunk)
            err = pending_error(chunk)
            if err is not None:
                raise err
        return n

    async def _apply(self, chunk: list[tuple[str, WatchObject]]) -> int:
        entries: list[Entry] = []
        for kind, obj in chunk:
            change = _CHANGES.get(kind)
            if change is None:
                if kind == "BOOKMARK":
                    rv, _ = self._bookmark(obj)
                    self._count("bookmarks")
                    if rv:
                        self.last_rv = rv
                else:
                    self._unknown(kind)
                continue
            entry = self._entry(obj, change)
            if entry is None:
                continue
            if change is ChangeType.DELETE:
                self.known.pop(entry.key, None)
            else:
                self.known[entry.key] = entry
            if entry.resource_version:
                self.last_rv = entry.resource_version
            entries.append(entry)
        await self._emit(entries)
        await self._save()
        return len(chunk)

    async def _watch(self) -> Literal["ended", "relist"]:
        """One watch, to the end of its stream or the periodic relist; raises on failure."""
        started = trio.current_time()
        with trio.move_on_at(self.next_relist) as relist_scope:
            if self._pending is not None:
                stack, chunks = self._pending
                try:
                    async with stack:
                        n = await self._consume(chunks)
                finally:
                    self._pending = None
            else:
                timeout = self._watch_timeout()
                params = watch_params(self.last_rv, timeout_seconds=timeout)
                self._count("watches")
                with trio.move_on_after(timeout + 60.0):  # the server should end it first
                    async with self.r.client.watch(self.ref, params, protobuf=self.protobuf) as stream:
                        chunks = stream.chunks()
                        async with contextlib.aclosing(chunks):  # type: ignore[type-var]
                            n = await self._consume(chunks)
                if self.r.follow and n == 0 and trio.current_time() - started < SHORT_WATCH:
                    raise TransientReaderError(f"watch {self.ref.name}: the watch ended at once, with no events")
        if relist_scope.cancelled_caught:
            return "relist"
        return "ended"

    async def _save(self, *, force: bool = False) -> None:
        store = self.r.bookmark_store
        if store is None or not self.last_rv or self.last_rv == self._saved_rv:
            return
        now = trio.current_time()
        if not force and now < self._next_save:
            return
        self._next_save = now + SAVE_INTERVAL
        rv = self.last_rv
        with trio.CancelScope(shield=force), trio.move_on_after(10.0):
            try:
                await store.save(self.ref.name, rv)
                self._saved_rv = rv
            except Exception as exc:  # noqa: BLE001 - a store failure must not stop the reading
                self._count("bookmark_save_errors")
                log.warning("%s: could not save the resume version: %s", self.ref.name, str(exc)[:256])


class APIServerReader:
    """Reads resource types through the APIServer's list and watch.

    Args:
        resources: ``pods``, ``deployments.apps``, ``widgets.example.com``...
            (discovered on the server), or :class:`ResourceRef` (no discovery).
        config: where the server is and how to authenticate
            (:func:`~tattler_etcd.readers.apiserver.config.load_kubeconfig`).
        http: an ``httpx.AsyncClient`` to use instead of building one (record
            and replay engines inject theirs); its base URL must point at the
            APIServer. Credentials still come from ``config`` when given.
        client_factory: builds the :class:`APIClient` (overrides both).
        content_type: ``"protobuf"`` (built-in kinds; custom resources still
            arrive as JSON) or ``"json"``.
        page_size: LIST ``limit``, and the largest chunk handed on.
        consistent_first_list: list the initial state with a consistent,
            paged read instead of "any version" from the APIServer's cache
            (client-go's choice, cheaper for the server, but one unpaged
            response).
        watch_list: True/False forces streaming WatchList on or off; None
            tries it and falls back to LIST per resource.
        relist_interval: relist every so many seconds (SNAPSHOT/DELETE entries).
        bookmark_store: where resume versions are kept between runs.
        once: stop after the initial state.
        follow: False for replays: each watch body's end is the end of that
            resource, and resources are read in order, one at a time.
        backoff_factory: makes each resource's :class:`Backoff`.
        rand: randomness for watch timeouts (tests make it fixed).
    """

    def __init__(
        self,
        resources: Sequence[str | ResourceRef],
        *,
        config: ClusterConfig | None = None,
        http: httpx.AsyncClient | None = None,
        client_factory: Callable[[], APIClient] | None = None,
        name: str = "apiserver",
        content_type: Literal["protobuf", "json"] = "protobuf",
        page_size: int = 500,
        consistent_first_list: bool = False,
        watch_list: bool | None = None,
        relist_interval: float | None = None,
        bookmark_store: BookmarkStore | None = None,
        once: bool = False,
        follow: bool = True,
        backoff_factory: Callable[[], Backoff] = Backoff,
        min_watch_timeout: float = MIN_WATCH_TIMEOUT,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not resources:
            raise ConfigError("APIServerReader: give at least one resource")
        if content_type not in ("protobuf", "json"):
            raise ConfigError(f"content_type: {content_type!r} is neither 'protobuf' nor 'json'")
        if page_size < 0:
            raise ConfigError("page_size: must be 0 (no paging) or more")
        if relist_interval is not None and relist_interval <= 0:
            raise ConfigError("relist_interval: must be more than 0 seconds")
        if client_factory is None:
            if config is None and http is None:
                raise ConfigError("APIServerReader: give config, http or client_factory")

            def client_factory() -> APIClient:
                return APIClient(config, http=http)

        self.name = name
        self.resources = list(resources)
        self.content_type = content_type
        self.page_size = page_size
        self.consistent_first_list = consistent_first_list
        self.watch_list = watch_list
        self.relist_interval = relist_interval
        self.bookmark_store = bookmark_store
        self.once = once
        self.follow = follow
        self.backoff_factory = backoff_factory
        self.min_watch_timeout = min_watch_timeout
        self.rand = rand
        self._client_factory = client_factory
        self.client: APIClient

    async def run(
        self,
        send: trio.MemorySendChannel[list[Entry]],
        counters: Counters,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Send chunks of entries; ``started()`` once every resource's initial state is handed on."""
        # ``send.close()``, not ``async with send``: the async close is a
        # checkpoint, and a cancellation arriving there (the consumer saw the
        # channel end and stopped) would replace the error we are raising.
        try:
            self.client = self._client_factory()
            try:
                refs = [r if isinstance(r, ResourceRef) else await self._discover(r)
                        for r in self.resources]
                loops = [_Loop(self, ref, send, counters) for ref in refs]
                if not self.follow or self.once:
                    await self._run_in_order(loops, task_status)
                else:
                    await self._run_together(loops, task_status)
            finally:
                with trio.CancelScope(shield=True):
                    await self.client.aclose()
        finally:
            send.close()

    async def _discover(self, spec: str) -> ResourceRef:
        backoff = self.backoff_factory()
        while True:
            try:
                return await self.client.discover(spec)
            except TransientReaderError as exc:
                delay = backoff.next_delay(trio.current_time())
                if exc.retry_after is not None:
                    delay = min(exc.retry_after, MAX_RETRY_AFTER)
                log.warning("discovery of %s: %s; retrying in %.1fs", spec, exc, delay)
                await trio.sleep(delay)

    async def _run_in_order(self, loops: list[_Loop], task_status: trio.TaskStatus[None]) -> None:
        try:
            for loop in loops:
                await loop.sync()
            task_status.started()
            if self.once:
                return
            for loop in loops:
                await loop.follow()
        finally:
            for loop in loops:
                await loop._close_pending()

    async def _run_together(self, loops: list[_Loop], task_status: trio.TaskStatus[None]) -> None:
        # The first loop to fail stops the others, and the reader raises that
        # one error as itself (not wrapped in an ExceptionGroup), so callers
        # can catch AccessDeniedError and read its message.
        failure: list[BaseException] = []

        async def one(loop: _Loop, nursery: trio.Nursery) -> None:
            try:
                await loop.sync()
                await loop.follow()
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the others stop
                if not failure:
                    failure.append(exc)
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            for loop in loops:
                nursery.start_soon(one, loop, nursery)
            for loop in loops:
                await loop.synced.wait()
            task_status.started()
        if failure:
            raise failure[0]

