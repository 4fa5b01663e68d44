"""The APIServer reader: client-go's reflector protocol under the shared core.

The policy (list, watch, relist with SNAPSHOT and the ghost rule's DELETEs,
back-off, periodic relist, resume, the identity index, the status, finite or
live mode) is :mod:`tattler_etcd.readers._reflector`'s. What is the
APIServer's, and stays here:

* **Initial state.** A streaming WatchList when the server has it (one
  request; the state arrives as ADDED events and ends at the bookmark
  annotated ``k8s.io/initial-events-end``), handed on as it arrives; else a
  paged LIST (``limit`` / ``continue``) followed by a WATCH from the list's
  version. A server that refuses WatchList (400/422), or ends the stream
  before the end bookmark, is asked with LIST from then on, for that
  resource (what the stream already handed on is then re-confirmed as
  SNAPSHOT).
* **resourceVersion choice**: :mod:`.rv` (a pure function, a table test).
* **Watch** from the last version seen (events and bookmarks alike), with a
  randomised ``timeoutSeconds`` so that many readers do not reconnect in
  step. Bookmarks are requested, never assumed. A watch that ends at once
  with nothing in it (the short-watch check) is a failure, so a broken server
  cannot make us spin.
* **429** waits for ``Retry-After`` (the core caps it); **401/403** stop the
  reader with :class:`~tattler_etcd.errors.AccessDeniedError` naming the resource.
* **JSON or protobuf** on the wire (:mod:`.client`).
* **Bookmark persistence** (``bookmark_store``): the last version is saved
  every so often; a restarted reader watches from it without relisting, and
  with the index file beside a file store it still reports, after a 410,
  what was deleted while it was down.

Replays: with ``follow=False`` the end of a watch body is the end of that
resource (no reconnect), and resources are read one after the other in the
order given, so the emitted order never depends on trio's scheduling.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Literal

import httpx
import trio

from tattler_etcd import codec
from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.errors import CodecError, ConfigError, TransientReaderError
from tattler_etcd.readers._reflector import (
    DEFAULT_MAX_INDEX_BYTES,
    Backoff,
    Identity,
    Index,
    IndexFile,
    Reflector,
    Relist,
    ResourceLoop,
)
from tattler_etcd.readers.apiserver.bookmarks import BookmarkStore, FileBookmarkStore
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

__all__ = ["INITIAL_EVENTS_END", "APIServerReader"]

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

_CHANGES = {"ADDED": ChangeType.ADD, "MODIFIED": ChangeType.UPDATE, "DELETED": ChangeType.DELETE}

_Events = list[tuple[str, WatchObject]]


class _Loop(ResourceLoop):
    """One resource type: LIST/WatchList and WATCH."""

    reader: APIServerReader

    def __init__(self, reader: APIServerReader, ref: ResourceRef, send: trio.MemorySendChannel[list[Entry]]) -> None:
        super().__init__(reader, ref.name, send)
        self.ref = ref
        self.use_watch_list = reader.watch_list is not False
        self.protobuf = reader.content_type == "protobuf"
        self._pending: tuple[contextlib.AsyncExitStack, AsyncIterator[_Events]] | None = None
        self._pending_rest: tuple[_Events, Exception | None] | None = None
        self._saved_rv = ""
        self._next_save = -math.inf

    # -- entries -----------------------------------------------------------

    def _key(self, namespace: str | None, name: str) -> str:
        return f"{self.ref.name}/{namespace}/{name}" if namespace else f"{self.ref.name}/{name}"

    def identity(self, key: str) -> tuple[str | None, str]:
        rest = key[len(self.ref.name) + 1 :]
        namespace, _, name = rest.rpartition("/")
        return namespace or None, name

    def _entry(self, obj: WatchObject, change: ChangeType) -> Entry | None:
        try:
            if isinstance(obj, bytes):
                entry = Entry.from_value(obj, change=change, source=SourceType.APISERVER)
            elif isinstance(obj, dict):
                entry = Entry.from_dict(obj, change=change, source=SourceType.APISERVER)
            else:
                raise CodecError("an event without an object")
        except CodecError as exc:
            self.reader.count("decode_errors")
            log.warning("%s: skipped an object that cannot be read: %s", self.ref.name, exc)
            return None
        entry.key = self._key(entry.namespace, entry.name)
        return entry

    def _unknown(self, kind: str) -> None:
        self.reader.count("unknown_events")
        log.warning("%s: skipped a watch event of unknown type %r", self.ref.name, kind[:40])

    def _bookmark(self, obj: WatchObject) -> tuple[str, bool]:
        """(resourceVersion, is the initial-events-end bookmark) of a BOOKMARK object."""
        if isinstance(obj, bytes):
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

    def _watch_timeout(self) -> int:
        return int(self.reader.min_watch_timeout * (1.0 + self.reader.rand()))

    # -- sync: resume from the bookmark store ------------------------------

    async def sync(self) -> None:
        r = self.reader
        if r.bookmark_store is not None and not self.synced_once and not r.once:
            rv = await r.bookmark_store.load(self.ref.name)
            if rv:
                saved = r.saved_index.get(self.ref.name)
                if saved is not None:
                    # Written with (or before) the bookmark: resume where it was written,
                    # so index and version agree (events in between come again: at least once).
                    rv, index = saved
                    self.resumed(rv, index)
                else:
                    self.resumed(rv, None)
                log.info("%s: resuming from stored resourceVersion %s", self.ref.name, rv)
                self._saved_rv = rv
        await super().sync()

    async def list_until_done(self, change: ChangeType) -> None:
        await super().list_until_done(change)
        await self._save(force=True)

    async def follow(self) -> None:
        try:
            await super().follow()
        finally:
            await self.close_pending()
            await self._save(force=True)

    async def close_pending(self) -> None:
        if self._pending is not None:
            stack, _ = self._pending
            self._pending = None
            with trio.CancelScope(shield=True):
                await stack.aclose()

    # -- LIST and WatchList ------------------------------------------------

    async def list_all(self, relist: Relist) -> str:
        position = await self._list_or_watch_list(relist)
        if relist.change is ChangeType.ADD and not relist.new:
            log.warning("%s: the server has no %s (an empty first list)", self.ref.name, self.ref.name,
                        extra={"resource": self.ref.name})
        return position

    async def _list_or_watch_list(self, relist: Relist) -> str:
        while self.use_watch_list:
            try:
                return await self._watch_list(relist)
            except WatchListRejected as exc:
                log.info("%s: the server refused WatchList (%s); using LIST", self.ref.name, exc)
                self.reader.count("watchlist_fallbacks")
                self.use_watch_list = False
                if relist.handed_on:
                    relist.restart()
        return await self._list(relist)

    async def _list(self, relist: Relist) -> str:
        r = self.reader
        rv = list_resource_version(self.position, unavailable=self.unavailable,
                                   consistent_first=r.consistent_first_list or r.once)
        token = ""
        while True:
            params = list_params(rv, limit=r.page_size or None, continue_token=token or None)
            # An expired continue token is a HistoryCompactedError: the core
            # lists again from a consistent read, pages already handed on
            # re-confirmed as SNAPSHOT (no object is announced twice as ADD).
            page = await r.client.list_page(self.ref, params, protobuf=self.protobuf)
            entries = []
            for obj in page.items:
                entry = self._entry(obj, relist.change)
                if entry is not None:
                    entries.append(entry)
            del page.items[:]
            await self.hand_on_page(relist, entries)
            token = page.continue_token
            if not token:
                return page.resource_version or self.position

    async def _watch_list(self, relist: Relist) -> str:
        """The initial state as a stream, handed on as it arrives, up to the end bookmark."""
        r = self.reader
        rv = "" if self.unavailable else self.position
        params = watch_params(rv, timeout_seconds=self._watch_timeout(), send_initial_events=True)
        r.count("watch_lists")
        stack = contextlib.AsyncExitStack()
        try:
            stream: WatchStream = await stack.enter_async_context(
                r.client.watch(self.ref, params, protobuf=self.protobuf))
            chunks = stream.chunks()
            await stack.enter_async_context(contextlib.aclosing(chunks))  # type: ignore[type-var]
            end_rv: str | None = None
            async for chunk in chunks:
                entries: list[Entry] = []
                for i, (kind, obj) in enumerate(chunk):
                    if kind == "BOOKMARK":
                        bookmark_rv, is_end = self._bookmark(obj)
                        if is_end:
                            end_rv = bookmark_rv
                            # What followed the end bookmark in the same read is
                            # already the watch: keep it for watch().
                            self._pending_rest = (list(chunk[i + 1 :]), pending_error(chunk))
                            break
                    elif kind in _CHANGES:
                        entry = self._entry(obj, relist.change)
                        if entry is not None:
                            entries.append(entry)
                    else:
                        self._unknown(kind)
                await self.hand_on_page(relist, entries)
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
        self._pending = (stack, chunks)
        return end_rv or self.position

    # -- WATCH ---------------------------------------------------------------

    async def watch(self) -> None:
        """One watch, to the end of its stream; raises on failure (and on a short empty watch)."""
        r = self.reader
        started = trio.current_time()
        n = 0
        if self._pending is not None:
            # The WatchList's stream goes on as the watch.
            stack, chunks = self._pending
            try:
                async with stack:
                    n = await self._consume(chunks)
            finally:
                self._pending = None
        else:
            timeout = self._watch_timeout()
            params = watch_params(self.position, timeout_seconds=timeout)
            r.count("watches")
            with trio.move_on_after(timeout + 60.0):  # the server should end it first
                async with r.client.watch(self.ref, params, protobuf=self.protobuf) as stream:
                    chunks = stream.chunks()
                    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
                        n = await self._consume(chunks)
        if r.follow and n == 0 and trio.current_time() - started < SHORT_WATCH:
            raise TransientReaderError(f"watch {self.ref.name}: the watch ended at once, with no events")

    async def _consume(self, chunks: AsyncIterator[_Events]) -> int:
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

    async def _apply(self, chunk: _Events) -> int:
        entries: list[Entry] = []
        updates: dict[str, Identity | None] = {}
        rv = self.position
        for kind, obj in chunk:
            change = _CHANGES.get(kind)
            if change is None:
                if kind == "BOOKMARK":
                    bookmark_rv, _ = self._bookmark(obj)
                    self.reader.count("bookmarks")
                    if bookmark_rv:
                        rv = bookmark_rv
                else:
                    self._unknown(kind)
                continue
            entry = self._entry(obj, change)
            if entry is None:
                continue
            if change is ChangeType.DELETE:
                updates[entry.key] = None
            else:
                updates[entry.key] = (entry.uid, entry.resource_version)
                self.index.note_kind(entry)
            if entry.resource_version:
                rv = entry.resource_version
            entries.append(entry)
        await self.emit(entries)
        # Only once handed on: a cancelled send leaves the index and the version as they were.
        self.apply(updates)
        if rv != self.position:
            self.advance(rv)
        self.reader.save_index()
        await self._save()
        return len(chunk)

    async def _save(self, *, force: bool = False) -> None:
        store = self.reader.bookmark_store
        rv = self.position
        if store is None or not rv or rv == self._saved_rv:
            return
        now = trio.current_time()
        if not force and now < self._next_save:
            return
        self._next_save = now + SAVE_INTERVAL
        with trio.CancelScope(shield=force), trio.move_on_after(10.0):
            try:
                await store.save(self.ref.name, rv)
                self._saved_rv = rv
            except Exception as exc:  # noqa: BLE001 - a store failure must not stop the reading
                self.reader.count("bookmark_save_errors")
                log.warning("%s: could not save the resume version: %s", self.ref.name, str(exc)[:256])


class APIServerReader(Reflector):
    """Reads resource types through the APIServer's list and watch.

    Args:
        resources: ``pods``, ``deployments.apps``, ``widgets.example.com``...
            (discovered on the server), or :class:`ResourceRef` (no discovery).
        config: where the server is and how to authenticate
            (:func:`~tattler_etcd.readers.apiserver.config.load_kubeconfig`).
        http: an ``httpx.AsyncClient`` to use instead of building one (record
            and replay engines inject theirs; not closed here); its base URL
            must point at the APIServer. Credentials still come from ``config``.
        client_factory: makes the ``httpx.AsyncClient`` instead (closed here
            on exit), as for the etcd reader.
        content_type: ``"protobuf"`` (built-in kinds; custom resources still
            arrive as JSON) or ``"json"``.
        page_size: LIST ``limit``.
        consistent_first_list: list the initial state with a consistent,
            paged read instead of "any version" from the APIServer's cache
            (client-go's choice, cheaper for the server, but one unpaged
            response). Always so with ``once`` (no watch follows, and the
            unpaged response is the run's memory peak).
        watch_list: True/False forces streaming WatchList on or off; None
            tries it and falls back to LIST per resource.
        relist_interval: relist every so many seconds (SNAPSHOT/DELETE entries).
        bookmark_store: where resume versions are kept between runs.
        index_file: where the identity index is kept between runs; by default
            ``<file>.index`` beside a :class:`FileBookmarkStore`.
        max_index_bytes: the index file's bound.
        once: stop after the initial state.
        follow: False for replays: each watch body's end is the end of that
            resource, and resources are read in order, one at a time.
        backoff_factory: makes each resource's :class:`Backoff`.
        connect_timeout: give up with ConnectTimeoutError when no first sync
            happened within this many seconds (before the first sync only).
        rand: randomness for watch timeouts (tests make it fixed).
    """

    source = SourceType.APISERVER

    def __init__(
        self,
        resources: Sequence[str | ResourceRef],
        *,
        config: ClusterConfig | None = None,
        http: httpx.AsyncClient | None = None,
        client_factory: Callable[[], httpx.AsyncClient] | None = None,
        name: str = "apiserver",
        content_type: Literal["protobuf", "json"] = "protobuf",
        page_size: int = 500,
        consistent_first_list: bool = False,
        watch_list: bool | None = None,
        relist_interval: float | None = None,
        bookmark_store: BookmarkStore | None = None,
        index_file: str | os.PathLike[str] | None = None,
        max_index_bytes: int = DEFAULT_MAX_INDEX_BYTES,
        once: bool = False,
        follow: bool = True,
        backoff_factory: Callable[[], Backoff] = Backoff,
        connect_timeout: float | None = None,
        min_watch_timeout: float = MIN_WATCH_TIMEOUT,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not resources:
            raise ConfigError("APIServerReader: give at least one resource")
        if content_type not in ("protobuf", "json"):
            raise ConfigError(f"content_type: {content_type!r} is neither 'protobuf' nor 'json'")
        if page_size < 0:
            raise ConfigError("page_size: must be 0 (no paging) or more")
        if config is None and http is None and client_factory is None:
            raise ConfigError("APIServerReader: give config, http or client_factory")
        if http is not None and client_factory is not None:
            raise ConfigError("APIServerReader: give http or client_factory, not both")
        if index_file is None and isinstance(bookmark_store, FileBookmarkStore):
            index_file = f"{os.fspath(bookmark_store.path)}.index"
        super().__init__(
            name=name, follow=follow, once=once, relist_interval=relist_interval,
            backoff_factory=backoff_factory, connect_timeout=connect_timeout,
            index_file=IndexFile(index_file, scope="apiserver", max_bytes=max_index_bytes)
            if index_file is not None else None,
        )
        self.config = config
        self.http = http
        self.resources = list(resources)
        self.content_type = content_type
        self.page_size = page_size
        self.consistent_first_list = consistent_first_list
        self.watch_list = watch_list
        self.bookmark_store = bookmark_store
        self.min_watch_timeout = min_watch_timeout
        self.rand = rand
        self._client_factory = client_factory
        # In finite mode (and for one-shot runs) resources go one at a time, in order.
        self.sync_in_order = not follow or once
        self.saved_index: dict[str, tuple[str, Index]] = {}
        self.client: APIClient
        self._owned: httpx.AsyncClient | None = None

    @property
    def endpoint(self) -> str:
        if self.config is not None:
            return self.config.server
        http = self._owned if self._owned is not None else self.http
        if http is not None:
            return str(http.base_url).rstrip("/")
        return "the APIServer"

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
        self.begin(counters)
        self.loops = []
        owned = self._owned = self._client_factory() if self._client_factory is not None else None
        try:
            self.client = APIClient(self.config, http=owned if owned is not None else self.http)
            try:
                refs = [r if isinstance(r, ResourceRef)
                        else await self.retrying(functools.partial(self.client.discover, r),
                                                 what=f"discovery of {r}")
                        for r in self.resources]
                if self.index_file is not None and self.bookmark_store is not None and not self.once:
                    self.saved_index = self.index_file.load()
                self.loops = [_Loop(self, ref, send) for ref in refs]
                await self.drive(task_status, watch_in_order=not self.follow)
            finally:
                with trio.CancelScope(shield=True):
                    for loop in self.loops:
                        await loop.close_pending()  # type: ignore[attr-defined]
                    await self.client.aclose()
                    if owned is not None:
                        await owned.aclose()
        finally:
            send.close()
            self.end()
