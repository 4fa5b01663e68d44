"""Prometheus metrics of a :class:`~tattler_etcd.pipeline.Runner`, as a collector of the caller's own.

::

    registry = prometheus_client.CollectorRegistry()
    registry.register(runner.collector())   # before runner.run()

Nothing is registered globally: a library user decides where the metrics go
(``--metrics-address`` serves them over HTTP, see :mod:`tattler_etcd.service`).

Where the numbers come from, and why so:

* most are read at scrape time from what the pipeline counts anyway
  (:class:`~tattler_etcd.stats.Counters`, channel statistics, the reader
  states the runner keeps), so a run nobody scrapes pays nothing for them;
* what needs labels the counters do not have (entries by source, kind and
  change; safety drops by kind; batch sizes; processor durations) is
  counted by thin wrappers around the runner's channels and processors,
  put in place only when :meth:`Runner.collector` was asked for before the
  run: a dictionary update per chunk or batch, never per-entry I/O.

Names follow Prometheus conventions: ``tattler_`` prefix, ``_total`` for
counters, base units (``_seconds``). Labels name sources, kinds, processors,
readers and stages, never an object (no names, no uids: unbounded series).
The ``kind`` label is the object's kind, with its API group when it has one
(``Pod``, ``Deployment.apps``, ``Widget.example.com``).
"""

from __future__ import annotations

import bisect
import collections
import functools
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Self

import trio

from tattler_etcd.data import Entry
from tattler_etcd.pipeline.sync import SyncMarker

if TYPE_CHECKING:
    from tattler_etcd.pipeline._collector import RunnerCollector as RunnerCollector
    from tattler_etcd.pipeline.batching import Batch
    from tattler_etcd.pipeline.runner import Runner
else:
    from tattler_etcd._lazy import lazy_exports

    # The collector (and prometheus-client, ~23 ms) only when asked for: a run
    # without --metrics-address counts with PipelineMetrics and never scrapes.
    __getattr__, __dir__ = lazy_exports(globals(), {"RunnerCollector": "tattler_etcd.pipeline._collector"})

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "DEFAULT_DOWN_AFTER",
    "DURATION_BUCKETS",
    "READER_STATES",
    "PipelineMetrics",
    "RunnerCollector",
    "readiness",
    "tap_receive",
    "tap_send",
]

#: Processor call durations, seconds: a file write is milliseconds, a remote sink may take seconds.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Batch sizes, entries: from a lone change up to the default size limit and past it.
BATCH_SIZE_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
#: Reader states, as ``tattler_reader_state{reader, state}`` reports them (1 for the current one):
#: the reflector core's (``ReaderStatus.state``) and ``failed`` (the reader raised).
READER_STATES = ("listing", "watching", "backing_off", "stopped", "failed")
#: A reader without a status object: the runner's own word for it, in the same states.
_RUNNER_STATES = {"starting": "listing", "synced": "watching", "ended": "stopped", "failed": "failed"}
#: How long a reader may be down before ``/readyz`` says 503, when it has no connect timeout of its own.
DEFAULT_DOWN_AFTER = 30.0


class _Histogram:
    """A label-free histogram filled on the trio thread (no lock: nothing else touches it)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append((_float_text(bound), running))
        out.append(("+Inf", self.count))
        return out


def _float_text(v: float) -> str:
    return str(int(v)) + ".0" if v == int(v) else repr(v)


@functools.lru_cache(maxsize=1024)
def _label(api_version: str, kind: str) -> str:
    group = api_version.rpartition("/")[0]
    return f"{kind}.{group}" if group else kind


class PipelineMetrics:
    """What the runner's taps count; read by :class:`RunnerCollector` at scrape time.

    Every method runs on the trio thread, between checkpoints: plain dicts, no locks.
    """

    def __init__(self) -> None:
        self._in: collections.Counter[tuple[Any, str, str, Any]] = collections.Counter()
        #: reader -> the highest resource version it handed on (etcd: a mod revision).
        self.last_revision: dict[str, int] = {}
        #: kind -> entries the safety stage did not let through.
        self.safety_dropped: collections.Counter[str] = collections.Counter()
        self.batch_sizes = _Histogram(BATCH_SIZE_BUCKETS)
        self.durations: dict[str, _Histogram] = {}
        #: stage -> a channel end whose statistics tell how much waits before the stage.
        self.channels: dict[str, Any] = {}
        self._pending: list[Entry] = []
        self._pending_out: list[list[Entry]] = []

    # -- taps -------------------------------------------------------------------

    def reader_sent(self, reader: str, chunk: list[Entry], *, revisions: bool = True) -> None:
        """A reader handed on ``chunk``. Keys are the entries' own attributes (labels are made at scrape time).

        ``revisions``: also track the newest resource version (for readers
        without a status object of their own, which reports its position).
        """
        counts = self._in
        for entry in chunk:
            counts[(entry.source, entry.api_version, entry.kind, entry.change)] += 1
        if revisions:
            top = self.last_revision.get(reader, 0)
            for entry in chunk:
                rv = entry.resource_version
                if rv.isdigit() and len(rv) < 20:
                    top = max(top, int(rv))
            if top:
                self.last_revision[reader] = top

    @property
    def entries_in(self) -> dict[tuple[str, str, str], int]:
        """(source, kind label, change) -> entries handed on by readers."""
        out: collections.Counter[tuple[str, str, str]] = collections.Counter()
        for (source, api_version, kind, change), n in self._in.items():
            out[(source.value, _label(api_version, kind), change.value)] += n
        return dict(out)

    def safety_received(self, chunk: list[Entry] | SyncMarker) -> None:
        if isinstance(chunk, SyncMarker):
            return  # the first sync's marker (pipeline.sync): nothing to count
        # The stage handles one chunk at a time and sends on a sub-list of it:
        # what it did not send of the previous chunk was dropped. Settled when
        # the next chunk comes (or the input ends), so the counter only grows.
        self.safety_settle()
        self._pending = chunk

    def safety_sent(self, chunk: list[Entry] | SyncMarker) -> None:
        if isinstance(chunk, SyncMarker):
            return
        self._pending_out.append(chunk)

    def safety_settle(self) -> None:
        pending, out = self._pending, self._pending_out
        self._pending, self._pending_out = [], []
        if len(pending) == sum(len(c) for c in out):
            return  # the common case: nothing dropped, nothing to look at
        sent = {id(e) for c in out for e in c}
        for e in pending:
            if id(e) not in sent:
                self.safety_dropped[_label(e.api_version, e.kind)] += 1

    def batch_sent(self, batch: Batch | SyncMarker) -> None:
        if isinstance(batch, SyncMarker):
            return  # the first sync's marker
        self.batch_sizes.observe(len(batch))

    def timed(self, name: str, proc: Callable[[Batch], Any]) -> Callable[[Batch], Any]:
        """``proc`` wrapped to observe each call's duration (errors too) in ``tattler_processor_duration_seconds``."""
        hist = self.durations.setdefault(name, _Histogram(DURATION_BUCKETS))
        # trio's clock: the wall clock in production, the virtual one in tests.
        clock = trio.current_time

        async def timed_call(batch: Batch) -> None:
            start = clock()
            try:
                await proc(batch)
            finally:
                hist.observe(clock() - start)

        return timed_call


def _status(reader: Any) -> Any:
    """The reader's :class:`~tattler_etcd.readers._reflector.ReaderStatus`, or None for readers without one."""
    status = getattr(reader, "status", None)
    return status if hasattr(status, "down_since") and hasattr(status, "resources") else None


def _down_since(status: Any) -> float | None:
    """Since when the reader has been failing: the earliest ``down_since`` of a resource not watching.

    A resource whose watch is open again counts as up even before its
    position moves (a quiet resource may not move for a while).
    """
    downs = [rs.down_since for rs in status.resources.values()
             if rs.down_since is not None and rs.state != "watching"]
    return min(downs) if downs else None


def readiness(runner: Runner, *, down_after: float | None = None) -> tuple[bool, str]:
    """Whether the runner is ready, and a one-line reason.

    Ready once every reader handed on its initial state; not ready while one
    has not, when one failed, and while one has been down (failing to reach
    its source) longer than ``down_after`` seconds (default: the reader's
    ``connect_timeout``, else :data:`DEFAULT_DOWN_AFTER`). A short outage
    after the first sync leaves it ready: the reader is retrying, and
    restarting the pod would not help.
    """
    states: Mapping[str, str] = runner.reader_states
    now = time.time()
    problems: list[str] = []
    for reader in runner.readers:
        name = reader.name
        ran = states.get(name, "starting")
        status = _status(reader)
        if ran == "failed":
            problems.append(f"{name} failed")
        elif ran == "starting" or (status is not None and not status.synced and ran != "ended"):
            problems.append(f"{name} has not finished its initial sync")
        elif status is not None and (since := _down_since(status)) is not None:
            limit = down_after if down_after is not None else (
                getattr(reader, "connect_timeout", None) or DEFAULT_DOWN_AFTER)
            if now - since > limit:
                problems.append(f"{name} down for {now - since:.0f}s: {status.last_error[:200]}")
    if problems:
        return False, "not ready: " + "; ".join(problems)
    return True, "every reader synced"


class _TapSend:
    """A send channel end that reports each value once it was sent; otherwise the channel itself."""

    def __init__(self, inner: Any, on_sent: Callable[[Any], None]) -> None:
        self._inner = inner
        self._on_sent = on_sent

    async def send(self, value: Any) -> None:
        await self._inner.send(value)
        self._on_sent(value)

    def send_nowait(self, value: Any) -> None:
        self._inner.send_nowait(value)
        self._on_sent(value)

    def clone(self) -> _TapSend:
        return _TapSend(self._inner.clone(), self._on_sent)

    def close(self) -> None:
        self._inner.close()

    async def aclose(self) -> None:
        await self._inner.aclose()

    def statistics(self) -> Any:
        return self._inner.statistics()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._inner.close()


class _TapReceive:
    """A receive channel end that reports each value received, and its end."""

    def __init__(self, inner: Any, on_received: Callable[[Any], None], on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_received = on_received
        self._on_end = on_end

    async def receive(self) -> Any:
        try:
            value = await self._inner.receive()
        except Exception:
            self._on_end()
            raise
        self._on_received(value)
        return value

    def __aiter__(self) -> _TapReceive:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def close(self) -> None:
        self._inner.close()
        self._on_end()

    async def aclose(self) -> None:
        self.close()

    def statistics(self) -> Any:
        return self._inner.statistics()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def tap_send(channel: Any, on_sent: Callable[[Any], None]) -> Any:
    """``channel`` (a memory send channel), reporting each value sent to ``on_sent``."""
    return _TapSend(channel, on_sent)


def tap_receive(channel: Any, on_received: Callable[[Any], None], on_end: Callable[[], None]) -> Any:
    """``channel`` (a memory receive channel), reporting each value to ``on_received`` and its end to ``on_end``."""
    return _TapReceive(channel, on_received, on_end)
