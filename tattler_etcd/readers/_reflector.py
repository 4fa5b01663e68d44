"""The reflector core: list, index, watch and relist, written once for both readers.

The etcd reader and the APIServer reader speak different protocols but follow
one policy, client-go's reflector's. This module owns that policy; each
reader keeps only its protocol (how to list a page, open a watch, read an
event) in subclasses of :class:`Reflector` and :class:`ResourceLoop`.

Per resource, the loop is::

    sync:    resume from a stored position, or list (ADD) until it succeeds
    follow:  watch from the position
             - history compacted / 410 (HistoryCompactedError) -> relist (SNAPSHOT)
             - transient failure (TransientReaderError) -> back off, watch again
             - permanent failure (PermanentReaderError) -> raise: the reader stops
             - periodic relist timer -> relist (SNAPSHOT)
             - the watch ended cleanly -> watch again (follow) or stop (finite)

**The index** is ``key -> (uid, resourceVersion)`` per resource (plus the
resource's apiVersion and kind once): identities, never objects, so it costs
a few hundred bytes per object whatever the objects' size.

**The ghost rule.** A relist emits ``DELETE`` for every uid the index knew
that the listing no longer has, *including* a uid whose key now holds another
uid (the object was deleted and re-created while we were not watching). The
``DELETE`` of the old uid goes on before the ``SNAPSHOT`` of the new one, in
the same chunk, so a consumer keyed by name and one keyed by uid both end in
the right state. :func:`relist_deletes` is that rule as a pure function.

**Counters** (``reader.<name>.<what>``), the same words for both readers:
``lists`` (a resource's first full read), ``relists`` (every later full read,
whatever the cause), ``expired`` (the position was compacted away: etcd
compaction, APIServer 410), ``periodic_relists``, ``retries`` (a back-off
wait after a transient failure), ``deletes_on_relist``, ``resumes`` (a
resource resumed from a stored position), ``entries`` (handed on), and
``index_saves``/``index_save_errors``/``index_too_large`` for the persisted
index. Protocol counters (``bookmarks``, ``progress_notifications``...) are
the readers' own.

**Status** (:class:`ReaderStatus`, ``reader.status``): what a readiness probe
or a metrics exporter needs, readable at any time without a checkpoint.

**connect_timeout**: until the reader has synced once, transient failures
are retried only until ``connect_timeout`` seconds have passed without an
answer (since it started, or since the last call that succeeded or page it
handed on), then :class:`~tattler_etcd.errors.ConnectTimeoutError` names the
endpoint and the last reason. It bounds a silence, not the first list: a
cluster of 200,000 objects takes longer than any connect timeout to list, and
is answering all along. After the first sync the reader retries forever (a
source that was there and went away is waited for, with back-off).
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import trio

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.errors import ConfigError, ConnectTimeoutError, HistoryCompactedError, TransientReaderError
from tattler_etcd.stats import Counters

__all__ = [
    "DEFAULT_MAX_INDEX_BYTES",
    "MAX_RETRY_AFTER",
    "Backoff",
    "Identity",
    "Index",
    "IndexFile",
    "ReaderStatus",
    "Reflector",
    "Relist",
    "ResourceLoop",
    "ResourceStatus",
    "State",
    "each_resource",
    "relist_deletes",
]

log = logging.getLogger(__name__)

#: Never wait longer than this for a server's Retry-After.
MAX_RETRY_AFTER = 600.0

#: The persisted index is not written past this size (see :class:`IndexFile`).
#: About 100 bytes per object: some 600,000 objects.
DEFAULT_MAX_INDEX_BYTES = 64 * 1024 * 1024

#: Write the persisted index at most this often while watching (it is also
#: written after every list and at exit). It can be tens of MB: not per event.
INDEX_INTERVAL = 30.0

#: The most entries handed on in one chunk from a list (a page larger than
#: this, such as an unpaged LIST from the APIServer's cache, is cut).
CHUNK = 500

#: What the index keeps per key: (uid, resourceVersion). Never the object.
Identity = tuple[str, str]

State = Literal["listing", "watching", "backing_off", "stopped"]

T = TypeVar("T")


# --- back-off -----------------------------------------------------------------------


@dataclasses.dataclass
class Backoff:
    """Jittered, capped exponential backoff, reset after a quiet spell.

    The defaults are client-go's reflector's: 0.8 s doubling to 30 s, each
    delay stretched by up to 100% at random (so readers that failed together
    do not retry together), and back to 0.8 s after two minutes without a
    failure, or at once when a loop made progress (:meth:`reset`). ``rand``
    and the clock (trio's) are injectable for tests and replays.
    """

    initial: float = 0.8
    cap: float = 30.0
    factor: float = 2.0
    jitter: float = 1.0
    reset_after: float = 120.0
    rand: Callable[[], float] = dataclasses.field(default=random.random, repr=False)
    _current: float = dataclasses.field(default=0.0, repr=False)
    _last: float = dataclasses.field(default=-math.inf, repr=False)

    def next_delay(self, now: float) -> float:
        """The delay before the next attempt, for a failure at ``now``."""
        if now - self._last > self.reset_after:
            self._current = 0.0
        self._last = now
        self._current = self.initial if self._current == 0.0 else min(self.cap, self._current * self.factor)
        return self._current * (1.0 + self.jitter * self.rand())

    def reset(self) -> None:
        """Start over from ``initial``: the last attempt made progress."""
        self._current = 0.0


# --- the index and the ghost rule ---------------------------------------------------


class Index:
    """``key -> (uid, resourceVersion)`` of one resource, and its apiVersion/kind.

    ``api_version``/``kind`` are the last ones seen for the resource (objects
    of one resource share them; etcd may hold a few objects in an older
    storage version, whose DELETE on relist then names the newer one).
    """

    __slots__ = ("api_version", "items", "kind")

    def __init__(self, items: dict[str, Identity] | None = None, *, api_version: str = "", kind: str = "") -> None:
        self.items: dict[str, Identity] = items if items is not None else {}
        self.api_version = api_version
        self.kind = kind

    def __len__(self) -> int:
        return len(self.items)

    def note_kind(self, entry: Entry) -> None:
        self.api_version, self.kind = entry.api_version, entry.kind


def relist_deletes(old: Mapping[str, Identity], new: Mapping[str, Identity]) -> list[tuple[str, Identity]]:
    """``(key, identity)`` of every uid ``old`` knew that ``new`` no longer has.

    A key that is gone, and a key that now holds another uid (deleted and
    re-created meanwhile): both lose their old uid. The ghost rule, pure.
    """
    out = []
    for key, ident in old.items():
        now = new.get(key)
        if now is None or now[0] != ident[0]:
            out.append((key, ident))
    return out


class Relist:
    """One full listing of a resource into a fresh index.

    The protocol feeds it each page's entries (:meth:`page`) and hands on what
    comes back; :meth:`finish` gives the DELETEs for what vanished. With
    ``old`` (a relist), an entry whose key held another uid is preceded by
    the DELETE of that uid. :meth:`restart` starts the listing over (the
    position was compacted half-way): what was already handed on counts as
    known, and every entry from then on is a SNAPSHOT.
    """

    def __init__(self, loop: ResourceLoop, change: ChangeType) -> None:
        self.loop = loop
        self.change = change
        self.old: dict[str, Identity] = dict(loop.index.items) if change is ChangeType.SNAPSHOT else {}
        self.new: dict[str, Identity] = {}
        self.replaced: set[str] = set()
        self.handed_on = False

    def page(self, entries: Iterable[Entry]) -> list[Entry]:
        """Record ``entries`` (already made with :attr:`change`); return the chunk to hand on.

        The DELETE of a replaced uid carries the new object's resourceVersion:
        the old one was deleted before the new one was made.
        """
        out: list[Entry] = []
        old, new, index = self.old, self.new, self.loop.index
        last = None
        for e in entries:
            key = e.key
            prev = old.get(key)
            if prev is not None and prev[0] != e.uid and key not in self.replaced:
                self.replaced.add(key)
                out.append(self.loop.deleted_entry(key, prev, e.resource_version))
            new[key] = (e.uid, e.resource_version)
            out.append(e)
            last = e
        if last is not None:
            index.note_kind(last)
        return out

    def restart(self) -> None:
        self.old.update(self.new)
        self.new = {}
        self.change = ChangeType.SNAPSHOT

    def finish(self, position: str) -> list[Entry]:
        """The DELETEs for keys the old index had and the listing did not."""
        return [self.loop.deleted_entry(key, ident, position)
                for key, ident in self.old.items() if key not in self.new]


# --- status -------------------------------------------------------------------------


@dataclasses.dataclass
class ResourceStatus:
    """Where one resource's loop is. ``position`` is the last revision or resourceVersion handed on."""

    state: State = "listing"
    synced: bool = False
    position: str = ""
    last_error: str = ""
    #: Wall-clock time (``time.time()``) of the first failure of the current
    #: streak of failures; None while healthy.
    down_since: float | None = None
    #: The resource as the user names it (``pods``, ``deployments``, ``widgets.example.com``).
    resource: str = ""
    #: The first sync was a full list (not a resume from a saved position), at ``list_revision``.
    full_list: bool = False
    #: The first list's revision or resourceVersion (``""``: resumed, or not known).
    list_revision: str = ""


@dataclasses.dataclass(frozen=True)
class ReaderStatus:
    """A reader at one moment, for readiness probes and metrics.

    ``state`` is the worst of its resources' (backing_off > listing >
    watching), or ``stopped`` once ``run`` returned. ``synced``: every
    resource handed on its initial state (or resumed). ``down_since`` is the
    earliest of its resources'. ``counters`` are the reader's own
    (``reader.<name>.`` stripped).
    """

    name: str
    state: State
    synced: bool
    last_error: str
    down_since: float | None
    resources: Mapping[str, ResourceStatus]
    counters: Mapping[str, int]


_WORST: dict[str, int] = {"stopped": 3, "backing_off": 2, "listing": 1, "watching": 0}


# --- the persisted index ------------------------------------------------------------


class IndexFile:
    """The index of every resource, kept beside the revision file or the bookmark file.

    So a reader restarted after its position was compacted away still knows
    which uids it had delivered, and the relist emits DELETE for those that
    vanished while it was down. One JSON document, identities only, keys
    without their common prefix, replaced atomically (a temporary file in the
    same directory, then ``os.replace``)::

        {"format": 1, "scope": "/registry", "resources": {"pods": {
            "position": "812", "apiVersion": "v1", "kind": "Pod", "prefix": "/registry/pods/",
            "items": [["default/web-1", "uid", "790"], ...]}}}

    Bounded: a document over ``max_bytes`` is not written and the old file is
    removed (a stale index would invent DELETEs), logged once and counted as
    ``index_too_large``; the next start then resumes without an index, and
    objects deleted while it was down through a compaction get no DELETE.
    A file that cannot be read is logged, named and ignored: the index is an
    aid, and the reader is correct without it except for that one case.
    """

    def __init__(self, path: str | os.PathLike[str], *, scope: str = "",
                 max_bytes: int = DEFAULT_MAX_INDEX_BYTES) -> None:
        self.path = Path(path)
        self.scope = scope
        self.max_bytes = max_bytes
        self._warned = False

    def load(self) -> dict[str, tuple[str, Index]]:
        """``name -> (position, index)`` of every resource in the file ({} when there is none)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("index file %s: %s: resuming without it", self.path, exc.strerror)
            return {}
        try:
            doc = json.loads(text)
            if doc.get("format") != 1 or doc.get("scope", "") != self.scope:
                raise ValueError("format or scope")
            out: dict[str, tuple[str, Index]] = {}
            for name, res in dict(doc["resources"]).items():
                prefix = str(res.get("prefix", ""))
                items = {prefix + str(k): (str(u), str(v)) for k, u, v in res["items"]}
                out[str(name)] = (str(res["position"]), Index(items, api_version=str(res.get("apiVersion", "")),
                                                              kind=str(res.get("kind", ""))))
            return out
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("index file %s: not a tattler-etcd index for %s: resuming without it",
                        self.path, self.scope or "this reader")
            return {}

    def save(self, snapshot: Mapping[str, tuple[str, Index]]) -> Literal["saved", "too_large", "error"]:
        """Write ``name -> (position, index)`` atomically, unless it is over the bound."""
        resources = {}
        for name, (position, index) in sorted(snapshot.items()):
            keys = list(index.items)
            prefix = os.path.commonprefix(keys) if keys else ""
            if "/" in prefix:
                prefix = prefix[: prefix.rfind("/") + 1]
            else:
                prefix = ""
            n = len(prefix)
            resources[name] = {
                "position": position, "apiVersion": index.api_version, "kind": index.kind, "prefix": prefix,
                "items": [[k[n:], u, v] for k, (u, v) in index.items.items()],
            }
        data = json.dumps({"format": 1, "scope": self.scope, "resources": resources},
                          separators=(",", ":")).encode()
        if len(data) > self.max_bytes:
            if not self._warned:
                log.warning("index file %s: %d bytes, over the %d-byte bound: not written (and removed); "
                            "a restart through a compaction will not report what was deleted meanwhile",
                            self.path, len(data), self.max_bytes)
                self._warned = True
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                pass
            return "too_large"
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("cannot write index file %s: %s", self.path, exc.strerror)
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            return "error"
        return "saved"


# --- running every resource ---------------------------------------------------------


async def each_resource(items: Sequence[T], fn: Callable[[T], Awaitable[None]]) -> None:
    """Run ``fn`` for every item concurrently; the first failure stops all and is raised as is.

    As itself, not wrapped in an ExceptionGroup, so callers can catch
    ``AccessDeniedError`` and read its message.
    """
    failure: list[BaseException] = []

    async def one(item: T, cancel: trio.CancelScope) -> None:
        try:
            await fn(item)
        except Exception as exc:  # noqa: BLE001 - re-raised below, unwrapped
            if not failure:
                failure.append(exc)
            cancel.cancel()

    async with trio.open_nursery() as nursery:
        for item in items:
            nursery.start_soon(one, item, nursery.cancel_scope)
    if failure:
        raise failure[0]


# --- the reader's shared half -------------------------------------------------------


class Reflector:
    """What both readers share: options, counters, status, the index file, retries.

    Options (both readers take them under these names):

    * ``follow``: True (live) watches until cancelled, reconnecting as
      needed; False (finite, for replays) takes the end of each watch body
      as the end of that resource's watch.
    * ``once``: stop after the initial state has been handed on.
    * ``relist_interval``: relist every so many seconds (live mode only).
    * ``backoff_factory``: makes each resource's :class:`Backoff`.
    * ``connect_timeout``: give up before the first sync (see the module docstring).
    """

    source: SourceType
    #: Sync resources one after another (in the order given) rather than together.
    sync_in_order: bool = True

    def __init__(self, *, name: str, follow: bool, once: bool, relist_interval: float | None,
                 backoff_factory: Callable[[], Backoff], connect_timeout: float | None,
                 index_file: IndexFile | None) -> None:
        if relist_interval is not None and relist_interval <= 0:
            raise ConfigError("--relist-interval: must be more than 0 seconds")
        if connect_timeout is not None and connect_timeout <= 0:
            raise ConfigError("--connect-timeout: must be more than 0 seconds")
        self.name = name
        self.follow = follow
        self.once = once
        self.relist_interval = relist_interval
        self.backoff_factory = backoff_factory
        self.connect_timeout = connect_timeout
        self.index_file = index_file
        self.counters = Counters()
        self.loops: list[ResourceLoop] = []
        self._stopped = False
        self._synced = False
        self._answered_at = 0.0
        self._index_version = 0
        self._index_saved_version = -1
        self._next_index_save = -math.inf
        self._unary_backoff: Backoff | None = None
        #: The reader's own unary calls (discovery, a revision) failing: a status of their own.
        self._unary = ResourceStatus(state="watching")

    # -- for subclasses ------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """Where the reader reads from, for error messages (a URL)."""
        return self.name

    def count(self, what: str, n: int = 1) -> None:
        self.counters.add(f"reader.{self.name}.{what}", n)

    def begin(self, counters: Counters) -> None:
        """Call first in ``run``: counters to write to, the clock for ``connect_timeout``."""
        self.counters = counters
        self._answered_at = trio.current_time()
        self._stopped = False
        self._synced = False

    def end(self) -> None:
        """Call last in ``run`` (a finally): the index is written and the status says stopped.

        Synchronous, no checkpoint: an error on the way out is never replaced by a cancellation.
        """
        self._stopped = True
        for loop in self.loops:
            loop.status.state = "stopped"
        self.save_index(force=True)

    async def drive(self, task_status: trio.TaskStatus[None], *, watch_in_order: bool = False) -> None:
        """Sync every loop, report started, then follow them (unless ``once``)."""
        loops = self.loops
        if self.sync_in_order:
            for loop in loops:
                await loop.sync()
            self.synced_all()
            task_status.started()
            if self.once:
                return
            if watch_in_order:
                for loop in loops:
                    await loop.follow()
            else:
                await each_resource(loops, lambda loop: loop.follow())
            return

        everyone_synced = trio.Event()

        async def sync_and_follow(loop: ResourceLoop) -> None:
            await loop.sync()
            # Watch only once started() is reported, so what comes before it
            # is exactly the initial state (a fast resource waits for the slow
            # ones; its watch starts from its list's version: nothing is lost).
            await everyone_synced.wait()
            await loop.follow()

        async def starter() -> None:
            for loop in loops:
                await loop.synced_event.wait()
            self.synced_all()
            task_status.started()
            everyone_synced.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(starter)
            await each_resource(loops, sync_and_follow)
            nursery.cancel_scope.cancel()

    def synced_all(self) -> None:
        self._synced = True
        self.save_index(force=True)

    # -- retrying ------------------------------------------------------------------------

    def check_connect_timeout(self, exc: BaseException) -> float:
        """Raise ConnectTimeoutError when past ``connect_timeout`` before the first sync; else the time left."""
        if self._synced or self.connect_timeout is None:
            return math.inf
        left = self._answered_at + self.connect_timeout - trio.current_time()
        if left <= 0:
            raise ConnectTimeoutError(
                f"{self.endpoint}: no answer within {self.connect_timeout:g}s before the first sync; "
                f"last error: {exc}",
                endpoint=self.endpoint, reason=str(exc),
            ) from exc
        return left

    def _connect_deadline(self) -> float:
        if self._synced or self.connect_timeout is None:
            return math.inf
        return self._answered_at + self.connect_timeout

    def answered(self) -> None:
        """The source answered (a call succeeded, a page was handed on): ``connect_timeout`` counts from now."""
        self._answered_at = trio.current_time()

    async def retrying(self, call: Callable[[], Awaitable[T]], *, what: str) -> T:
        """Run a unary call (discovery, a revision), retrying transient errors with back-off.

        A compaction and permanent errors pass through.
        """
        if self._unary_backoff is None:
            self._unary_backoff = self.backoff_factory()
        backoff = self._unary_backoff
        while True:
            try:
                # Before the first sync, one call may not outlast connect_timeout
                # either: an endpoint that accepts and never answers would
                # otherwise hold us for the whole request timeout.
                with trio.move_on_at(self._connect_deadline()) as waited:
                    result = await call()
                if waited.cancelled_caught:
                    # Cut by the connect deadline: the last real failure is the reason worth
                    # giving (a refused connection), not the cut itself.
                    raise TransientReaderError(self._unary.last_error or f"{self.endpoint}: {what}: no answer")
            except TransientReaderError as exc:
                left = self.check_connect_timeout(exc)
                self.count("retries")
                delay = _delay(backoff, exc, left)
                if self._unary.down_since is None:
                    self._unary.down_since = time.time()
                self._unary.last_error = str(exc)[:256]
                self._unary.state = "backing_off"
                log.warning("reader %s: %s: %s; retrying in %.2fs", self.name, what, exc, delay)
                try:
                    await trio.sleep(delay)
                finally:
                    self._unary.state = "watching"
                continue
            backoff.reset()
            self.answered()
            self._unary.down_since = None
            self._unary.last_error = ""
            return result

    # -- the index file ------------------------------------------------------------------

    def index_changed(self) -> None:
        self._index_version += 1

    def save_index(self, *, force: bool = False) -> None:
        """Write the index file if it changed (at most every INDEX_INTERVAL unless ``force``)."""
        if self.index_file is None or self._index_version == self._index_saved_version:
            return
        now = trio.current_time() if not force else 0.0
        if not force and now < self._next_index_save:
            return
        snapshot = {loop.name: (loop.status.position, loop.index) for loop in self.loops if loop.status.synced}
        if not snapshot:
            return
        result = self.index_file.save(snapshot)
        self._index_saved_version = self._index_version
        if not force:
            self._next_index_save = now + INDEX_INTERVAL
        self.count({"saved": "index_saves", "too_large": "index_too_large", "error": "index_save_errors"}[result])

    # -- status --------------------------------------------------------------------------

    @property
    def status(self) -> ReaderStatus:
        """The reader now (cheap; no I/O, no checkpoint)."""
        resources = {loop.name: dataclasses.replace(loop.status) for loop in self.loops}
        everything = [*resources.values(), self._unary]
        # The unary calls' "watching" means "not failing"; before any loop
        # exists (discovery), the reader is still getting its initial state.
        states = [s.state for s in resources.values()] or ["listing"]
        if self._unary.state == "backing_off":
            states.append("backing_off")
        state: State = "stopped" if self._stopped else max(states, key=lambda s: _WORST[s])
        downs = [s.down_since for s in everything if s.down_since is not None]
        errors = [s.last_error for s in everything if s.last_error]
        return ReaderStatus(
            name=self.name, state=state, synced=bool(resources) and all(s.synced for s in resources.values()),
            last_error=errors[-1] if errors else "", down_since=min(downs) if downs else None,
            resources=resources, counters=dict(self.counters.prefixed(f"reader.{self.name}")),
        )


def _delay(backoff: Backoff, exc: TransientReaderError, left: float) -> float:
    delay = backoff.next_delay(trio.current_time())
    if exc.retry_after is not None:
        delay = min(exc.retry_after, MAX_RETRY_AFTER)
    return min(delay, left)


# --- one resource's loop ------------------------------------------------------------


class ResourceLoop(abc.ABC):
    """The state machine of one resource; the reader's subclass adds the protocol.

    The protocol implements :meth:`list_all` (one full listing through a
    :class:`Relist`, returning the position it is consistent at), :meth:`watch`
    (one watch from :attr:`position`: returns when it ended cleanly, raises
    HistoryCompactedError or TransientReaderError otherwise) and
    :meth:`identity` (namespace and name from a key). It hands entries on
    with :meth:`emit` and reports its position with :meth:`advance`.
    """

    def __init__(self, reader: Reflector, name: str, send: trio.MemorySendChannel[list[Entry]]) -> None:
        self.reader = reader
        self.name = name
        self.send = send
        self.index = Index()
        self.status = ResourceStatus(resource=name)
        self.backoff = reader.backoff_factory()
        self.need_list = True
        #: The position was compacted away: the next list must be a consistent read.
        self.unavailable = False
        self.synced_once = False
        self.synced_event = trio.Event()

    # -- the protocol ----------------------------------------------------------------

    @abc.abstractmethod
    async def list_all(self, relist: Relist) -> str:
        """List the resource fully; hand on ``relist.page(...)`` per page; return the position."""

    @abc.abstractmethod
    async def watch(self) -> None:
        """Watch from :attr:`position` until the stream ends."""

    @abc.abstractmethod
    def identity(self, key: str) -> tuple[str | None, str]:
        """(namespace, name) of an index key."""

    # -- helpers for the protocol ----------------------------------------------------

    @property
    def position(self) -> str:
        return self.status.position

    def advance(self, position: str) -> None:
        """Everything up to ``position`` was handed on (and the index updated): a healthy loop."""
        self.status.position = position
        self.status.down_since = None
        self.status.last_error = ""
        self.backoff.reset()

    async def emit(self, entries: list[Entry]) -> None:
        if entries:
            await self.send.send(entries)
            self.reader.count("entries", len(entries))
            self.reader.answered()

    def apply(self, updates: Mapping[str, Identity | None]) -> None:
        """Apply watch changes to the index (after they were handed on: a cancelled send leaves it as it was)."""
        items = self.index.items
        for key, ident in updates.items():
            if ident is None:
                items.pop(key, None)
            else:
                items[key] = ident
        if updates:
            self.reader.index_changed()

    def deleted_entry(self, key: str, ident: Identity, position: str) -> Entry:
        """A DELETE for an object a relist no longer found: identity only (the index keeps no bodies).

        Its resourceVersion is the relist's position: the object was deleted
        at or before it; the exact version went with the compacted history.
        """
        uid, _rv = ident
        namespace, name = self.identity(key)
        meta: dict[str, Any] = {"name": name, "uid": uid, "resourceVersion": position}
        if namespace:
            meta["namespace"] = namespace
        api_version, kind = self.index.api_version, self.index.kind
        return Entry(
            change=ChangeType.DELETE, source=self.reader.source, uid=uid, api_version=api_version, kind=kind,
            namespace=namespace, name=name, resource_version=position, key=key,
            raw={"apiVersion": api_version, "kind": kind, "metadata": meta},
        )

    def resumed(self, position: str, index: Index | None) -> None:
        """Start from a stored position (and index) instead of listing."""
        self.status.position = position
        if index is not None:
            self.index = index
        self.need_list = False
        self.reader.count("resumes")

    # -- the policy ------------------------------------------------------------------

    async def sync(self) -> None:
        """Hand on the initial state (unless resumed), retrying until done."""
        if self.need_list:
            await self.list_until_done(ChangeType.ADD)
            self.status.full_list = True
            self.status.list_revision = self.position
        self._mark_synced()

    def _mark_synced(self) -> None:
        self.synced_once = True
        self.status.synced = True
        self.synced_event.set()

    async def list_until_done(self, change: ChangeType) -> None:
        """List (ADD first, SNAPSHOT after) until it succeeds; hand on the DELETEs of the ghost rule."""
        relist = Relist(self, change)
        self.reader.count("lists" if change is ChangeType.ADD else "relists")
        expired_in_a_row = 0
        while True:
            self.status.state = "listing"
            try:
                position = await self.list_all(relist)
            except HistoryCompactedError as exc:
                self.reader.count("expired")
                log.info("reader %s: %s: %s; listing again from a consistent read", self.reader.name, self.name, exc)
                self.unavailable = True
                if relist.handed_on:
                    expired_in_a_row = 0
                relist.restart()
                expired_in_a_row += 1
                if expired_in_a_row > 1:  # at once the first time, as client-go does
                    await self.wait(TransientReaderError(str(exc)))
                continue
            except TransientReaderError as exc:
                await self.wait(exc)
                continue
            break
        deletes = relist.finish(position)
        if deletes:
            self.reader.count("deletes_on_relist", len(deletes))
            for i in range(0, len(deletes), CHUNK):
                await self.emit(deletes[i : i + CHUNK])
        self.reader.count("deletes_on_relist", len(relist.replaced))
        self.index.items = relist.new
        self.unavailable = False
        self.need_list = False
        self.advance(position)
        self.reader.index_changed()
        self.reader.save_index(force=True)

    async def hand_on_page(self, relist: Relist, entries: list[Entry]) -> None:
        """Hand on one listed page through ``relist`` (the ghost rule's DELETEs first), in chunks of CHUNK."""
        chunk = relist.page(entries)
        for i in range(0, len(chunk), CHUNK):
            await self.emit(chunk[i : i + CHUNK])
            relist.handed_on = True

    async def wait(self, exc: TransientReaderError) -> None:
        """Back off after a transient failure (or give up: ``connect_timeout`` before the first sync)."""
        left = self.reader.check_connect_timeout(exc)
        self.reader.count("retries")
        delay = _delay(self.backoff, exc, left)
        if self.status.down_since is None:
            self.status.down_since = time.time()
        self.status.last_error = str(exc)[:256]
        self.status.state = "backing_off"
        log.warning("reader %s: %s: %s; retrying in %.2fs", self.reader.name, self.name, exc, delay,
                    extra={"resource": self.name})
        await trio.sleep(delay)

    async def follow(self) -> None:
        """Watch, relisting when needed, until cancelled (live) or the stream's end (finite)."""
        r = self.reader
        interval = r.relist_interval if r.follow else None
        next_relist = trio.current_time() + interval if interval else math.inf
        try:
            while True:
                if self.need_list:
                    await self.list_until_done(ChangeType.SNAPSHOT)
                    if interval:
                        next_relist = trio.current_time() + interval
                    continue
                try:
                    with trio.move_on_at(next_relist) as relist_scope:
                        self.status.state = "watching"
                        await self.watch()
                except HistoryCompactedError as exc:
                    r.count("expired")
                    log.info("reader %s: %s: %s; relisting", r.name, self.name, exc)
                    self.unavailable = True
                    self.need_list = True
                    continue
                except TransientReaderError as exc:
                    await self.wait(exc)
                    continue
                if relist_scope.cancelled_caught:
                    r.count("periodic_relists")
                    log.info("reader %s: periodic relist of %s", r.name, self.name)
                    self.need_list = True
                    continue
                if not r.follow:
                    return
        finally:
            self.status.state = "stopped"
