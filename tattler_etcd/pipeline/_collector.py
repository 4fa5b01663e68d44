"""The ``prometheus_client`` side of :mod:`tattler_etcd.pipeline.metrics` (which documents the metrics).

Apart so that prometheus-client is imported only by :meth:`Runner.collector`
(``--metrics-address``, or a library user's registry), not by every run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from tattler_etcd.pipeline.metrics import _RUNNER_STATES, READER_STATES, _down_since, _status

if TYPE_CHECKING:
    from tattler_etcd.pipeline.runner import Runner

__all__ = ["RunnerCollector"]


class RunnerCollector(Collector):
    """A ``prometheus_client`` collector reading one runner; register it on your own registry."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    def describe(self) -> list[Metric]:
        # Nothing to check up front: collect() is cheap and names never clash
        # within one runner. An empty describe keeps registration free of I/O.
        return []

    def collect(self) -> Iterator[Metric]:
        runner = self._runner
        c = runner.counters
        m = runner.metrics
        readers = runner.reader_names
        processors = runner.processor_names

        entries = CounterMetricFamily("tattler_entries_in", "Entries handed on by the readers.",
                                      labels=["source", "kind", "change"])
        if m is not None:
            for (source, kind, change), n in sorted(m.entries_in.items()):
                entries.add_metric([source, kind, change], n)
        yield entries

        yield _per("tattler_decode_failures", "Values a reader could not decode (counted and skipped).",
                   "reader", readers, lambda r: c[f"reader.{r}.decode_errors"])
        dropped = CounterMetricFamily("tattler_safety_dropped",
                                      "Entries the safety stage did not let through (Secrets, uninspectable).",
                                      labels=["kind"])
        if m is not None:
            for kind, n in sorted(m.safety_dropped.items()):
                dropped.add_metric([kind], n)
        yield dropped
        yield CounterMetricFamily("tattler_safety_redacted_values", "Values the safety stage redacted.",
                                  value=c["safety.redacted"])

        yield _per("tattler_processor_batches", "Batches a processor took without raising.",
                   "processor", processors, lambda p: c[f"processor.{p}.batches"])
        yield _per("tattler_processor_entries", "Entries in the batches a processor took without raising.",
                   "processor", processors, lambda p: c[f"processor.{p}.entries"])
        yield _per("tattler_processor_dropped_batches", "Batches skipped for a processor that was not ready.",
                   "processor", processors, lambda p: c[f"processor.{p}.dropped"])
        yield _per("tattler_processor_dropped_entries", "Entries in the batches skipped for a processor.",
                   "processor", processors, lambda p: c[f"processor.{p}.dropped_entries"])
        yield _per("tattler_processor_errors", "Batches a processor raised on.",
                   "processor", processors, lambda p: c[f"processor.{p}.errors"])
        durations = HistogramMetricFamily("tattler_processor_duration_seconds",
                                          "How long a processor took per batch.", labels=["processor"])
        if m is not None:
            for name, hist in sorted(m.durations.items()):
                durations.add_metric([name], hist.buckets(), hist.sum)
        yield durations
        yield _delivery_family(runner)

        yield CounterMetricFamily("tattler_batches", "Batches the batching stage sent.",
                                  value=c["batching.batches"])
        sizes = HistogramMetricFamily("tattler_batch_size_entries", "Entries per batch.")
        if m is not None:
            sizes.add_metric([], m.batch_sizes.buckets(), m.batch_sizes.sum)
        yield sizes
        depth = GaugeMetricFamily(
            "tattler_queue_depth",
            "Chunks or batches waiting before a stage: buffered, plus senders blocked on it.",
            labels=["stage"],
        )
        if m is not None:
            for stage, channel in sorted(m.channels.items()):
                st = channel.statistics()
                depth.add_metric([stage], st.current_buffer_used + st.tasks_waiting_send)
        yield depth

        yield from _reader_families(runner)
        # The reflector core's counters (readers/_reflector.py): ``relists`` counts every
        # full read after the first, whatever the cause; ``expired`` a compacted position.
        yield _per("tattler_reader_relists", "Full reads after the first: periodic, or after history was compacted.",
                   "reader", readers, lambda r: c[f"reader.{r}.relists"])
        yield _per("tattler_reader_compactions", "Times a reader's position was compacted away (etcd compaction, 410).",
                   "reader", readers, lambda r: c[f"reader.{r}.expired"])
        yield _per("tattler_reader_retries", "Back-off waits after a transient failure.",
                   "reader", readers, lambda r: c[f"reader.{r}.retries"])


def _delivery_family(runner: Runner) -> Metric:
    """``tattler_delivery_total{processor, outcome}``: what each delivery processor did, by its own count.

    Why: a processor that sends entries elsewhere (NATS, a webhook) skips,
    resends or gives up on some of them inside a batch it took without
    raising, so the processor counters above cannot show it. Any processor
    with a ``delivery_counts()`` method returning ``{outcome: count}`` is
    reported; the outcomes are the processor's own words (docs/delivery.md).
    """
    family = CounterMetricFamily("tattler_delivery", "What a delivery processor did with what it was given, by outcome.",
                                 labels=["processor", "outcome"])
    for name, proc in runner.processors.items():
        counts = getattr(proc, "delivery_counts", None)
        if callable(counts):
            for outcome, n in sorted(counts().items()):
                family.add_metric([name, outcome], n)
    return family


def _reader_families(runner: Runner) -> Iterator[Metric]:
    """State, sync, outage, position and (etcd) revision lag of each reader."""
    m = runner.metrics
    states = runner.reader_states
    now = time.time()
    state = GaugeMetricFamily("tattler_reader_state", "1 for each reader's current state.",
                              labels=["reader", "state"])
    synced = GaugeMetricFamily("tattler_reader_synced", "1 once the reader handed on its initial state.",
                               labels=["reader"])
    down = GaugeMetricFamily("tattler_reader_down_seconds",
                             "How long the reader has been failing to reach its source (0 while healthy).",
                             labels=["reader"])
    last = GaugeMetricFamily("tattler_reader_last_revision",
                             "The newest revision (etcd) or resourceVersion (APIServer) handed on, per resource.",
                             labels=["reader", "resource"])
    lag = GaugeMetricFamily("tattler_etcd_revision_lag",
                            "etcd's revision as last heard minus the last one handed on, per resource.",
                            labels=["reader", "resource"])
    for reader in runner.readers:
        name = reader.name
        status = _status(reader)
        ran = states.get(name, "starting")
        current = "failed" if ran == "failed" else status.state if status is not None else _RUNNER_STATES[ran]
        for s in READER_STATES:
            state.add_metric([name, s], 1.0 if s == current else 0.0)
        synced.add_metric([name], 1.0 if (status.synced if status is not None else ran != "starting") else 0.0)
        since = _down_since(status) if status is not None else None
        down.add_metric([name], max(0.0, now - since) if since is not None else 0.0)
        if status is not None:
            heard = _header_revisions(reader)
            for resource, rs in sorted(status.resources.items()):
                if rs.position.isdigit():
                    last.add_metric([name, resource], int(rs.position))
                    if resource in heard:
                        lag.add_metric([name, resource], max(0, heard[resource] - int(rs.position)))
        elif m is not None and name in m.last_revision:
            last.add_metric([name, ""], m.last_revision[name])
    yield state
    yield synced
    yield down
    yield last
    yield lag


def _header_revisions(reader: Any) -> dict[str, int]:
    """resource -> the newest revision its etcd gateway heard (etcd readers only: their loops hold a ``gw``)."""
    out: dict[str, int] = {}
    for loop in getattr(reader, "loops", None) or ():
        heard = getattr(getattr(loop, "gw", None), "header_revision", 0)
        if isinstance(heard, int) and heard:
            out[str(loop.name)] = heard
    return out


def _per(name: str, doc: str, label: str, keys: Iterable[str], value: Callable[[str], float]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    for k in keys:
        family.add_metric([k], value(k))
    return family
