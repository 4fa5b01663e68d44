"""EtcdReader: etcd's protocol under the reflector core (:mod:`tattler_etcd.readers._reflector`).

The policy (list, watch, relist on compaction with SNAPSHOT and the ghost
rule's DELETEs, back-off, periodic relist, resume, the identity index, the
status, finite or live mode) is the core's. What is etcd's, and stays here:

1. **The list** of every resource is paged and pinned to one revision R (the
   first page's header revision), so the initial state of all resources is
   one consistent snapshot; the next page is fetched while the current one
   is decoded and handed on (one page ahead: bounded memory). A range that
   answers code 11 (compacted) restarts that resource's list at the latest
   revision, as a relist.
2. **The watch** of each resource's prefix from its revision + 1, with
   ``prev_kv`` (a DELETE carries the object as it was) and progress
   notifications (a quiet resource still learns how far it is up to date).
   ``create_revision == mod_revision`` is an ``ADD``, else ``UPDATE``. A
   watch canceled with ``compact_revision`` is the core's "expired"; an
   error line, a cancel without it, or a stream that ends (live mode) is
   transient. Our own ``watch_timeout`` (``Grpc-Timeout``) ends a watch
   cleanly.
3. **Resume** from the revision file (:mod:`.revstore`) and the index file
   beside it (``<revision_file>.index``), unless etcd is behind the file.

All HTTP goes through one ``httpx.AsyncClient`` (see :mod:`.gateway`), which
the caller may inject. Cancellation is prompt and no thread is ever started.
"""

from __future__ import annotations

import json
import logging
import os
import random
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack

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
from tattler_etcd.readers import turns
from tattler_etcd.readers._httpclient import async_client
from tattler_etcd.readers._reflector import (
    DEFAULT_MAX_INDEX_BYTES,
    Backoff,
    Identity,
    IndexFile,
    Reflector,
    Relist,
    ResourceLoop,
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
from tattler_etcd.readers.etcd.keys import (
    DEFAULT_RESOURCES,
    KeyMap,
    ResourceSpec,
    prefix_range_end,
    resolve_resource,
)
from tattler_etcd.readers.etcd.revstore import RevisionStore
from tattler_etcd.stats import Counters

__all__ = ["DEFAULT_RESOURCES", "EtcdReader"]

log = logging.getLogger(__name__)

_ETCD = SourceType.ETCD
#: Objects decoded between two looks at the event loop (readers.turns.wait_turn): ~0.5 ms of work.
_SLICE = 100
_ADD, _UPDATE, _DELETE, _SNAPSHOT = ChangeType.ADD, ChangeType.UPDATE, ChangeType.DELETE, ChangeType.SNAPSHOT


class EtcdReader(Reflector):
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
        follow: True (live); False for replays: the end of each watch body is
            the end of that resource's watch (see :class:`Reflector`).
        cacert, cert, key: TLS files, as etcdctl names them.
        insecure_skip_tls_verify: do not check etcd's certificate (etcdctl's flag).
        user, password: etcd's own authentication (etcdctl's ``--user``), see
            :class:`~tattler_etcd.readers.etcd.gateway.EtcdAuth`.
        client: an ``httpx.AsyncClient`` to use (not closed here): how a
            recording is made and replayed. Its TLS settings are its own.
        client_factory: makes the ``httpx.AsyncClient`` instead (closed here on exit).
        api_path: the gateway's API path; None asks the server (``GET /version``).
        revision_file: remember per-resource revisions here and resume from
            them on start when etcd still has that history.
        index_file: where the identity index is kept between runs; by default
            ``<revision_file>.index`` (none without a revision file).
        max_index_bytes: the index file's bound (see :class:`IndexFile`).
        relist_interval: relist every so many seconds (SNAPSHOT, DELETE for
            the vanished); ignored in finite mode, where time is not a signal.
        watch_timeout: ask the gateway to end each watch after this many
            seconds (``Grpc-Timeout``); the reader then watches again at once
            (live) or treats it as the end of the watch (finite). A watch
            still silent 30 s after its end was due is a dead connection.
        progress_interval: the cluster's etcd
            ``--experimental-watch-progress-notify-interval`` (default 600 s):
            a watch silent for three of them is a dead connection.
        backoff_factory: makes each resource's :class:`Backoff` (its ``rand``
            makes a replay's waits reproducible).
        connect_timeout: give up with ConnectTimeoutError when etcd cannot be
            read within this many seconds of the start (before the first sync only).
        progress: called with the number of objects listed so far after each
            page of the initial list, and with ``done=True`` at its end.
        end_at_stream_end, seed, backoff_initial, backoff_max: deprecated:
            ``follow=False``, and ``backoff_factory``.
    """

    source = _ETCD
    sync_in_order = True  # one revision pinned across resources: list them in turn

    def __init__(
        self,
        endpoints: str | Sequence[str] = "http://127.0.0.1:2379",
        *,
        resources: Sequence[str | ResourceSpec] = DEFAULT_RESOURCES,
        prefix: str = "/registry",
        name: str = "etcd",
        page_size: int = 500,
        once: bool = False,
        follow: bool = True,
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
        index_file: str | os.PathLike[str] | None = None,
        max_index_bytes: int = DEFAULT_MAX_INDEX_BYTES,
        relist_interval: float | None = None,
        watch_timeout: float | None = None,
        progress_interval: float | None = None,
        request_timeout: float = 30.0,
        backoff_factory: Callable[[], Backoff] = Backoff,
        connect_timeout: float | None = None,
        progress: Callable[..., None] | None = None,
        end_at_stream_end: bool | None = None,
        seed: int | None = None,
        backoff_initial: float | None = None,
        backoff_max: float | None = None,
    ) -> None:
        if end_at_stream_end is not None:
            warnings.warn("EtcdReader(end_at_stream_end=...) is deprecated: use follow=False",
                          DeprecationWarning, stacklevel=2)
            follow = not end_at_stream_end
        if seed is not None or backoff_initial is not None or backoff_max is not None:
            warnings.warn("EtcdReader(seed=, backoff_initial=, backoff_max=) are deprecated: use backoff_factory",
                          DeprecationWarning, stacklevel=2)
            initial = backoff_initial if backoff_initial is not None else 0.8
            cap = backoff_max if backoff_max is not None else 30.0
            if not 0 < initial <= cap:
                raise ConfigError("back-off: need 0 < initial <= max")
            rng = random.Random(seed)

            def backoff_factory() -> Backoff:
                return Backoff(initial=initial, cap=cap, rand=rng.random)

        urls = [u.strip() for u in (endpoints.split(",") if isinstance(endpoints, str) else endpoints)]
        urls = [u for u in urls if u]
        if not urls:
            raise ConfigError("--etcd-endpoints: give at least one endpoint")
        if page_size < 1:
            raise ConfigError("--page-size: must be at least 1")
        if client is not None and client_factory is not None:
            raise ConfigError("give an httpx client or a client factory, not both")
        specs = [r if isinstance(r, ResourceSpec) else resolve_resource(r) for r in resources]
        if not specs:
            raise ConfigError("--resources: give at least one resource")
        self.keymap = KeyMap(prefix, specs)
        if index_file is None and revision_file is not None:
            index_file = f"{os.fspath(revision_file)}.index"
        super().__init__(
            name=name, follow=follow, once=once, relist_interval=relist_interval,
            backoff_factory=backoff_factory, connect_timeout=connect_timeout,
            index_file=IndexFile(index_file, scope=self.keymap.prefix, max_bytes=max_index_bytes)
            if index_file is not None else None,
        )
        self.urls = urls
        self.tls = TLSFiles(cacert, cert, key, insecure_skip_tls_verify)
        self.endpoints = [endpoint_client(u, self.tls) for u in urls]
        self.specs = specs
        self.page_size = page_size
        self.api_path = api_path
        self.watch_timeout = watch_timeout
        self.progress_interval = progress_interval
        self.request_timeout = request_timeout
        self.progress = progress
        self._client = client
        self._client_factory = client_factory
        self._ssl = ssl_context(self.tls)  # checks the files now: a bad flag fails before any I/O
        if user is not None and client is not None:
            raise ConfigError("user: give it to the injected client's auth (EtcdAuth), not to the reader")
        self._auth = EtcdAuth(user, password or "", verify=self._ssl or True) if user is not None else None
        self._store = RevisionStore(revision_file, prefix=self.keymap.prefix) if revision_file else None
        self._pinned = 0
        self._listed = 0
        self._listed_any = False
        self._etcd_loops: list[_EtcdLoop] = []

    @property
    def finite(self) -> bool:
        """Deprecated spelling of ``not follow``."""
        return not self.follow

    @property
    def endpoint(self) -> str:
        return ",".join(self.urls)

    # --- the Reader protocol ---------------------------------------------------------

    async def run(
        self,
        send: trio.MemorySendChannel[list[Entry]],
        counters: Counters,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """List, report started, then watch until cancelled (or done: ``once``, finite mode)."""
        self.begin(counters)
        self._pinned = self._listed = 0
        self._listed_any = False
        try:
            async with AsyncExitStack() as stack:
                gw = Gateway(
                    await self._open_client(stack), self.endpoints, api_path=self.api_path,
                    request_timeout=self.request_timeout, progress_interval=self.progress_interval,
                )
                self._etcd_loops = [_EtcdLoop(self, gw, spec, send) for spec in self.specs]
                self.loops = list(self._etcd_loops)
                await self.retrying(gw.discover, what="version")
                # --once wants the whole state, not what changed since the file.
                if not self.once:
                    await self._resume(gw)
                if not self.follow and self.relist_interval is not None:
                    log.info("reader %s: periodic relist is off in finite mode", self.name)
                await self.drive(task_status)
        finally:
            # close(), not aclose(): no checkpoint here, so an error of ours is
            # never replaced by a cancellation on the way out.
            send.close()
            self.end()
            if self._store is not None:
                self._store.flush(force=True)

    async def _open_client(self, stack: AsyncExitStack) -> httpx.AsyncClient:
        if self._client is not None:
            return self._client
        if self._client_factory is not None:
            client = self._client_factory()
        else:
            client = async_client(  # closes a socket whose TLS handshake was cancelled (readers/_httpclient.py)
                verify=self._ssl if self._ssl is not None else self._default_verify(),
                timeout=self.request_timeout,
                auth=self._auth,
                # One watch stream per resource plus a range: keep them all open.
                limits=httpx.Limits(max_connections=len(self.specs) + 4, max_keepalive_connections=8),
            )
        await stack.enter_async_context(client)
        return client

    def _default_verify(self) -> bool:
        """httpx's ``verify`` without TLS flags: False when no connection can use TLS, else True.

        Why: ``verify=True`` loads the CA bundle when the client is built
        (~22 ms of every start), which only a TLS connection needs. Plain
        ``http://`` endpoints and no proxy from the environment (a proxy may
        itself be ``https://``) make none, so nothing is left unverified.
        """
        plain = all(e.protocol == "http" for e in self.endpoints)
        return not (plain and not urllib.request.getproxies())

    def synced_all(self) -> None:
        if self.progress is not None and self._listed_any:
            self.progress(self._listed, done=True)
        if self._store is not None:
            self._store.replace({loop.name: int(loop.position or 0) for loop in self.loops})
            self._store.flush()
        super().synced_all()

    # --- resume from the revision file -----------------------------------------------

    async def _resume(self, gw: Gateway) -> None:
        if self._store is None:
            return
        stored = self._store.load(spec.segment for spec in self.specs)
        if stored is None:
            return
        current = await self.retrying(gw.current_revision, what="revision")
        if max(stored.values()) > current:
            # etcd was restored from an older backup, or this is another cluster:
            # watching "from the future" would silently wait; list instead.
            log.warning("reader %s: revision file is ahead of etcd (%d > %d): listing everything",
                        self.name, max(stored.values()), current)
            return
        saved = self.index_file.load() if self.index_file is not None else {}
        for loop in self._etcd_loops:
            position, index = saved.get(loop.name, ("", None))
            if index is not None and position.isdigit() and int(position) <= stored[loop.name]:
                # The index is written less often than the revisions: resume from
                # where it was written, so index and position agree (at least once).
                loop.resumed(position, index)
            else:
                if self.index_file is not None:
                    log.info("reader %s: no index for %s: a relist will not report what was deleted "
                             "while tattler-etcd was down", self.name, loop.spec.name)
                loop.resumed(str(stored[loop.name]), None)
        log.info("reader %s: resuming from the revision file (%s)", self.name,
                 ", ".join(f"{loop.spec.name}@{loop.position}" for loop in self._etcd_loops))


class _EtcdLoop(ResourceLoop):
    """One resource's range pager and watch."""

    reader: EtcdReader

    def __init__(self, reader: EtcdReader, gw: Gateway, spec: ResourceSpec,
                 send: trio.MemorySendChannel[list[Entry]]) -> None:
        super().__init__(reader, spec.segment, send)
        self.status.resource = spec.name
        self.gw = gw
        self.spec = spec
        self.key_prefix = reader.keymap.key_prefix(spec)
        self.range_end = prefix_range_end(self.key_prefix)

    @property
    def revision(self) -> int:
        return int(self.position or 0)

    def identity(self, key: str) -> tuple[str | None, str]:
        ok = self.reader.keymap.parse(key.encode("utf-8"), self.spec)
        return ok.namespace, ok.name

    def advance(self, position: str) -> None:
        super().advance(position)
        store = self.reader._store
        if store is not None:
            store.note(self.name, int(position))
            store.flush()

    # --- listing ---------------------------------------------------------------------

    async def list_all(self, relist: Relist) -> str:
        """Range the resource, a page ahead, at the pinned revision (initial list) or now (relist)."""
        r = self.reader
        initial = relist.change is _ADD
        revision = r._pinned if initial else 0
        # One page of room, filled without a checkpoint: the fetcher hands page
        # k over and sends the request for page k+1 before the consumer runs,
        # so etcd reads k+1 while k is decoded and handed on. (A plain
        # ``await send`` lets the woken consumer decode first, and the next
        # request waits for it: no overlap.) At most two pages are held.
        # Each page comes with an event set once the request for the next one
        # is on the wire (or failed, or there is none): the consumer waits for
        # it before its CPU work, or the request would wait for that work
        # (httpx takes several checkpoints before it writes), and etcd and we
        # would take turns instead of working at once.
        pages_send, pages_recv = trio.open_memory_channel[tuple[RangePage, trio.Event]](1)
        pinned = revision
        failure: Exception | None = None
        keys = 0

        holding = False  # the turn (readers.turns): from a page's arrival until the next request is written

        def hold() -> None:
            nonlocal holding
            if not holding:
                turns.hold()
                holding = True

        def release() -> None:
            nonlocal holding
            if holding:
                holding = False
                turns.release()

        async def fetch() -> None:
            nonlocal pinned, failure
            async with pages_send:
                key = self.key_prefix
                handed: trio.Event | None = None  # the last page's: set once this request is sent

                def sent() -> None:
                    if handed is not None:
                        handed.set()
                    release()

                async def attempt() -> RangePage:
                    try:
                        return await self.gw.range(key, self.range_end, limit=r.page_size, revision=pinned,
                                                   on_sent=sent, on_reply=hold)
                    except BaseException:
                        release()  # a back-off does not hold up the pipeline
                        raise
                    finally:
                        if handed is not None:
                            handed.set()  # failed (the consumer does not wait out a back-off), or no hook

                try:
                    while True:
                        page = await r.retrying(attempt, what=f"range {self.spec.name}")
                        if not pinned:
                            pinned = page.revision
                        handed = trio.Event()
                        last = page.last_key
                        if not page.more or last is None:
                            handed.set()
                            release()
                        try:
                            pages_send.send_nowait((page, handed))
                        except trio.WouldBlock:
                            release()  # the consumer is behind: it needs the loop to catch up
                            await pages_send.send((page, handed))
                        if not page.more or last is None:
                            return
                        key = last + b"\0"
                except Exception as exc:  # noqa: BLE001 - re-raised below, unwrapped (no ExceptionGroup)
                    failure = exc
                finally:
                    if handed is not None:
                        handed.set()
                    release()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetch)
            async with pages_recv:
                async for page, next_sent in pages_recv:
                    await next_sent.wait()
                    kvs = page.kvs
                    entries = []
                    for i in range(0, len(kvs), _SLICE):
                        if i:
                            await turns.wait_turn()  # a page that came in meanwhile is turned around first
                        entries += self._entries_from_kvs(kvs[i:i + _SLICE], relist.change)
                    keys += len(page)
                    if initial:
                        r._listed += len(page)
                        r._listed_any = True
                    await self.hand_on_page(relist, entries)
                    if r.progress is not None and initial:
                        r.progress(r._listed)
        if failure is not None:
            raise failure
        if initial and not keys:
            log.warning("reader %s: no %s under %s at revision %d (is --prefix right?)", r.name, self.spec.name,
                        self.key_prefix.decode("utf-8", "replace"), pinned, extra={"resource": self.spec.name})
        if initial and not r._pinned:
            r._pinned = pinned
        return str(pinned)

    def _entries_from_kvs(self, kvs: list[KeyValue], change: ChangeType) -> list[Entry]:
        out = []
        for kv in kvs:
            entry = self._entry(kv.key, kv.value, change, kv.mod_revision)
            if entry is not None:
                out.append(entry)
        self.reader.count("listed", len(kvs))
        return out

    def _entry(self, key: bytes, value: bytes, change: ChangeType, revision: int) -> Entry | None:
        """An Entry for one kv, or None (counted, logged with the key) when it is not an object."""
        r = self.reader
        try:
            r.keymap.check(key, self.spec)
        except BadKeyError as exc:
            r.count("bad_keys")
            log.warning("reader %s: skipped: %s", r.name, exc)
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
            r.count("decode_errors")
            log.warning("reader %s: skipped %s: not valid JSON (%s)", r.name, skey, type(exc).__name__,
                        extra={"key": skey, "resource": self.spec.name})
            return None
        except DecodeError as exc:
            r.count("decode_errors")
            log.warning("reader %s: skipped: %s", r.name, exc.with_key(skey),
                        extra={"key": skey, "resource": self.spec.name})
            return None
        except Exception as exc:  # noqa: BLE001 - a codec bug must not stop the reader; the key says where
            r.count("decode_errors")
            log.warning("reader %s: skipped %s: %s while decoding", r.name, skey, type(exc).__name__,
                        extra={"key": skey, "resource": self.spec.name})
            return None
        if not entry.uid:
            r.count("decode_errors")
            log.warning("reader %s: skipped %s: the object has no metadata.uid", r.name, skey,
                        extra={"key": skey, "resource": self.spec.name})
            return None
        return entry

    # --- watching --------------------------------------------------------------------

    async def watch(self) -> None:
        """One watch stream from ``revision + 1``.

        Messages already received together (a consumer that fell behind, a
        catch-up) go on as one chunk; a lone message goes on at once. Nothing
        waits for more input, so this adds no latency, and it holds only what
        one read brought in. Returns when our own ``watch_timeout`` ended the
        stream, or (finite mode) at the end of the body. Raises
        HistoryCompactedError or TransientReaderError, after handing on what
        came before the cancel or error line.
        """
        r = self.reader
        entries: list[Entry] = []
        updates: dict[str, Identity | None] = {}
        top = start = self.revision

        async def flush() -> None:
            nonlocal entries, updates
            await self.emit(entries)
            # Only once handed on: a cancelled send leaves the index and the revision as they were.
            self.apply(updates)
            if top > self.revision:
                self.advance(str(top))
            entries, updates = [], {}
            r.save_index()

        async with self.gw.watch(self.key_prefix, self.range_end, start + 1, timeout=r.watch_timeout) as messages:
            async for msg in messages:
                kind = msg.kind
                if kind == "events":
                    for ev in msg.events:
                        top = max(top, ev.kv.mod_revision)
                        entry = self._event_entry(ev.type, ev.kv, ev.prev_kv, updates)
                        if entry is not None:
                            entries.append(entry)
                    r.count("events", len(msg.events))
                elif kind == "progress":
                    r.count("progress_notifications")
                    top = max(top, msg.revision)
                elif kind == "created":
                    pass
                elif kind == "canceled":
                    await flush()  # what came before the cancel is good
                    if msg.compact_revision:
                        raise HistoryCompactedError(
                            f"etcd watch of {self.spec.name} from revision {self.revision + 1}: compacted "
                            f"(history starts at {msg.compact_revision})"
                        )
                    raise TransientReaderError(
                        f"etcd watch of {self.spec.name} canceled: {msg.detail or 'no reason'}")
                else:  # error line
                    # Our own Grpc-Timeout: etcd 3.4's gateway reports it as code 2
                    # "context deadline exceeded", later ones as code 4.
                    await flush()  # what came before the error is good
                    if r.watch_timeout is not None and (msg.grpc_code == 4 or "deadline exceeded" in msg.detail):
                        return
                    raise TransientReaderError(
                        f"etcd watch of {self.spec.name}: error line (grpc code {msg.grpc_code}): {msg.detail}"
                    )
                if not messages.buffered():
                    await flush()
            await flush()
        if r.follow:
            raise TransientReaderError(f"etcd watch of {self.spec.name}: the stream ended")

    def _event_entry(
        self, type_: str, kv: KeyValue, prev: KeyValue | None, updates: dict[str, Identity | None],
    ) -> Entry | None:
        """The entry for one event; the index change it implies goes to ``updates`` (read first)."""
        key = kv.key
        skey = key.decode("utf-8", "backslashreplace")
        if type_ == "DELETE":
            known = updates[skey] if skey in updates else self.index.items.get(skey)
            updates[skey] = None
            if prev is not None and prev.value:
                return self._entry(key, prev.value, _DELETE, kv.mod_revision)
            # prev_kv is missing when its revision was compacted away: the
            # index still knows who it was.
            self.reader.count("deletes_without_prev_kv")
            if known is None:
                log.warning("reader %s: DELETE of %s without its previous value, unknown here: not handed on",
                            self.reader.name, skey)
                return None
            return self.deleted_entry(skey, known, str(kv.mod_revision))
        change = _ADD if kv.create_revision == kv.mod_revision else _UPDATE
        entry = self._entry(key, kv.value, change, kv.mod_revision)
        if entry is None:
            updates[skey] = None
        else:
            updates[skey] = (entry.uid, entry.resource_version)
            self.index.note_kind(entry)
        return entry
