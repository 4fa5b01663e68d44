"""The runner: the one place that wires readers, stages and processors together.

::

    reader(s) -> safety -> preprocess -> batching -> routing -> processor tasks

Each arrow is an unbuffered trio memory channel; each stage owns both its
ends and closes its output when its input ends, so the end of the input flows
down the line and every stage drains before the next closes. Readers and the
first three stages pass chunks (``list[Entry]``) so a channel hop is paid per
chunk, not per entry; batching turns chunks into :class:`Batch` objects. The
preprocess stage only runs when a preprocessor was added.

How a run ends:

* every reader returns (a finite source, ``--once``): the pipeline drains,
  every processor gets every batch, :meth:`Runner.run` returns;
* :meth:`Runner.stop`: the readers are cancelled, then the same drain;
* the task running :meth:`Runner.run` is cancelled: the readers are cancelled
  at once and the stages get ``drain_timeout`` seconds to deliver what was
  already read, then they are cancelled too; ``run`` ends with the
  cancellation, leaving no task behind;
* a reader raises: the other readers are stopped, the pipeline drains what
  was read, then ``run`` raises that reader's error;
* a processor raises: that is reported (:attr:`Runner.errors`, the log,
  ``processor.<name>.errors``) and the run goes on.
"""

from __future__ import annotations

import collections
import logging
import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import trio

from tattler_etcd.data import Entry
from tattler_etcd.errors import ConfigError, ProcessorError, RegistrationError
from tattler_etcd.pipeline.batching import Batch, run_batching
from tattler_etcd.pipeline.metrics import PipelineMetrics, tap_receive, tap_send
from tattler_etcd.pipeline.preprocess import Preprocessor, run_preprocess
from tattler_etcd.pipeline.redaction import Redactor
from tattler_etcd.pipeline.routing import Policy, Processor, Route, run_processor, run_routing
from tattler_etcd.pipeline.safety import run_safety
from tattler_etcd.pipeline.sync import ReaderSync, ResourceSync, SyncMarker
from tattler_etcd.readers import Reader
from tattler_etcd.stats import Counters

if TYPE_CHECKING:
    from tattler_etcd.pipeline._collector import RunnerCollector

__all__ = ["Runner"]

logger = logging.getLogger("tattler_etcd.pipeline.runner")

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
#: How many processor errors :attr:`Runner.errors` keeps (the newest); all are counted and logged.
_MAX_ERRORS = 100


class _ReaderStarted:
    """The ``task_status`` a reader gets: counts it as started (once), and how its first sync went."""

    def __init__(self, runner: Runner, reader: Reader) -> None:
        self._runner = runner
        self.name = self._name = reader.name
        self._reader = reader
        self.done = False
        #: The reader's first sync, as its status said when it reported started (None: it did not).
        self.sync: ReaderSync | None = None

    def started(self, value: Any = None) -> None:
        if self.done:
            raise RuntimeError("called 'started' twice on the same task status")
        self.sync = _reader_sync(self._reader)
        self._count()

    def gave_up(self) -> None:
        """The reader ended without reporting started: count it, so nobody waits for it (no sync info)."""
        self._count()

    def _count(self) -> None:
        self.done = True
        if self._runner._reader_states.get(self._name) == "starting":
            self._runner._reader_states[self._name] = "synced"
        self._runner._reader_started()


def _reader_sync(reader: Reader) -> ReaderSync:
    """How a reader's first sync went, from its ``status`` (its resources'), if it has one."""
    status = getattr(reader, "status", None)
    resources = getattr(status, "resources", None) or {}
    return ReaderSync(reader.name, tuple(
        ResourceSync(str(getattr(r, "resource", "") or name), bool(getattr(r, "full_list", False)),
                     str(getattr(r, "list_revision", "") or ""))
        for name, r in resources.items()
    ))


class Runner:
    """A pipeline from readers to processors. Add readers and processors, then ``await run()``.

    Args:
        batch_window: seconds a batch stays open after its first entry.
        batch_size: most distinct objects in a batch.
        allow_secrets: let ``Secret`` objects through (their values redacted).
        drain_timeout: seconds the stages get to deliver what was read when
            the run is cancelled (0: stop at once).
        redact: extra redaction rules on top of the defaults
            (``"Pod:spec.containers[*].args"``, ``"annotation:NAME"``...,
            see :func:`tattler_etcd.pipeline.redaction.parse_rule`).
        keep_unknown_fields: keep fields the codec does not know (by default
            the safety stage drops them: they may hold anything).
    """

    def __init__(
        self,
        *,
        batch_window: float = 5.0,
        batch_size: int = 1000,
        allow_secrets: bool = False,
        drain_timeout: float = 5.0,
        redact: Iterable[str] = (),
        keep_unknown_fields: bool = False,
    ) -> None:
        if not batch_window > 0:
            raise ConfigError(f"batch_window must be more than 0 seconds, not {batch_window!r}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size!r}")
        if not drain_timeout >= 0:
            raise ConfigError(f"drain_timeout must be 0 or more seconds, not {drain_timeout!r}")
        self.batch_window = batch_window
        self.batch_size = batch_size
        self.allow_secrets = allow_secrets
        self.drain_timeout = drain_timeout
        #: The safety stage's rules (a bad rule raises ConfigError here, naming it).
        self.redactor = Redactor(redact, keep_unknown_fields=keep_unknown_fields)
        #: Every stage's counts, readable while the run goes on, logged when it ends.
        self.counters = Counters()
        self._readers: list[Reader] = []
        self._preprocessors: list[Preprocessor] = []
        self._routes: list[Route] = []
        self._errors: collections.deque[ProcessorError] = collections.deque(maxlen=_MAX_ERRORS)
        self._reader_errors: list[BaseException] = []
        self._state = "new"
        self._reader_scope = trio.CancelScope()
        self._stage_scope = trio.CancelScope(shield=True)
        self._to_start = 0
        self._all_started = trio.Event()
        self._reader_states: dict[str, str] = {}
        self._started: list[_ReaderStarted] = []
        #: What the metric taps count; None until :meth:`collector` is asked for.
        self.metrics: PipelineMetrics | None = None

    # -- registration -------------------------------------------------------

    def _check_not_started(self, what: str) -> None:
        if self._state != "new":
            raise RegistrationError(f"cannot add a {what} after run() started")

    def add_reader(self, reader: Reader) -> None:
        """Add a reader (anything with a ``name`` and ``run``, see :class:`tattler_etcd.readers.Reader`)."""
        self._check_not_started("reader")
        if not isinstance(reader, Reader):
            raise RegistrationError(f"not a reader (needs name and run): {type(reader).__name__}")
        if not isinstance(reader.name, str) or not _NAME.match(reader.name):
            raise RegistrationError(f"reader name must be letters, digits, '-' or '_': {reader.name!r}")
        if any(r.name == reader.name for r in self._readers):
            raise RegistrationError(f"a reader named {reader.name!r} was already added")
        self._readers.append(reader)

    def add_preprocessor(self, fn: Preprocessor) -> None:
        """Add a preprocessor; they run in the order added (see :mod:`tattler_etcd.pipeline.preprocess`)."""
        self._check_not_started("preprocessor")
        if not callable(fn):
            raise RegistrationError(f"a preprocessor must be callable, not {type(fn).__name__}")
        self._preprocessors.append(fn)

    def add_processor(
        self, name: str, proc: Processor, *, policy: Policy = Policy.BLOCK, buffer: int = 0,
    ) -> None:
        """Add a processor under a unique ``name`` (counters: ``processor.<name>.*``).

        ``proc`` is an async callable taking a :class:`Batch`. ``policy``
        says what happens when it is not ready for the next batch;
        ``buffer`` is how many batches may wait for it (see
        :mod:`tattler_etcd.pipeline.routing`).
        """
        self._check_not_started("processor")
        if not isinstance(name, str) or not _NAME.match(name):
            raise RegistrationError(f"processor name must be letters, digits, '-' or '_': {name!r}")
        if any(r.name == name for r in self._routes):
            raise RegistrationError(f"a processor named {name!r} was already added")
        if not callable(proc):
            raise RegistrationError(f"processor {name!r} is not callable: {type(proc).__name__}")
        if not isinstance(policy, Policy):
            raise RegistrationError(f"processor {name!r}: policy must be a Policy, not {policy!r}")
        if not isinstance(buffer, int) or buffer < 0:
            raise RegistrationError(f"processor {name!r}: buffer must be 0 or more, not {buffer!r}")
        synced = getattr(proc, "synced", None)
        self._routes.append(Route(name, proc, policy, buffer, synced if callable(synced) else None))

    # -- state --------------------------------------------------------------

    @property
    def errors(self) -> list[ProcessorError]:
        """The newest processor errors (up to 100), oldest first; each names its processor."""
        return list(self._errors)

    @property
    def processor_names(self) -> list[str]:
        """The processors' names, in the order added."""
        return [r.name for r in self._routes]

    @property
    def processors(self) -> dict[str, Processor]:
        """The processors by name, in the order added (their ``delivery_counts()``, when they have one, feeds metrics)."""
        return {r.name: cast(Processor, r.processor) for r in self._routes}

    @property
    def readers(self) -> list[Reader]:
        """The readers, in the order added (their ``status``, when they have one, feeds readiness and metrics)."""
        return list(self._readers)

    @property
    def reader_names(self) -> list[str]:
        """The readers' names, in the order added."""
        return [r.name for r in self._readers]

    @property
    def reader_states(self) -> dict[str, str]:
        """Each started reader's state: ``starting``, ``synced`` (initial list handed on), ``ended``, ``failed``."""
        return dict(self._reader_states)

    def collector(self) -> RunnerCollector:
        """A Prometheus collector of this runner's metrics (see :mod:`tattler_etcd.pipeline.metrics`).

        Register it on a registry of your own. Ask for it before :meth:`run`
        to get the labelled metrics (entries by source/kind/change, batch
        sizes, processor durations, queue depths); later, only those read
        from the counters.
        """
        if self.metrics is None and self._state == "new":
            self.metrics = PipelineMetrics()
        # Here, not at the top: prometheus-client (~23 ms) only for those who ask for metrics.
        from tattler_etcd.pipeline._collector import RunnerCollector

        return RunnerCollector(self)

    def stop(self) -> None:
        """Stop the readers; the pipeline then drains and :meth:`run` returns. Safe to call any time."""
        self._reader_scope.cancel()

    def _reader_started(self) -> None:
        self._to_start -= 1
        if self._to_start == 0:
            self._all_started.set()

    # -- running ------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until every reader ends, :meth:`stop`, or cancellation; see the module docstring.

        ``task_status.started()`` is called once every reader has reported
        started (its initial list handed on), so ``await nursery.start(runner.run)``
        returns when the first full picture is on its way to the processors
        (followed by the first-sync marker when a processor has ``synced``,
        see :mod:`tattler_etcd.pipeline.sync`).

        Raises:
            RegistrationError: no reader or no processor, or run a second time.
            ReaderError: (or whatever a reader raised) after the drain.
        """
        if self._state != "new":
            raise RegistrationError("a Runner runs once")
        if not self._readers:
            raise RegistrationError("add a reader before run()")
        if not self._routes:
            raise RegistrationError("add a processor before run()")
        self._state = "running"
        self._to_start = len(self._readers)
        send_in, recv_in = trio.open_memory_channel[list[Entry] | SyncMarker](0)
        logger.info(
            "pipeline starting: %d reader(s), %d preprocessor(s), processors %s",
            len(self._readers), len(self._preprocessors), ", ".join(self.processor_names),
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._run_stages, recv_in)
                try:
                    async with send_in:
                        with self._reader_scope:
                            async with trio.open_nursery() as readers:
                                for reader in self._readers:
                                    self._reader_states[reader.name] = "starting"
                                    readers.start_soon(self._run_reader, reader, self._reader_channel(reader, send_in))
                                await self._all_started.wait()
                                logger.info("pipeline started: every reader handed on its initial list")
                                await self._send_marker(send_in)
                                task_status.started()
                finally:
                    if trio.current_effective_deadline() == -math.inf:
                        # Cancelled from outside: give the stages drain_timeout to deliver.
                        if self.drain_timeout > 0:
                            self._stage_scope.deadline = trio.current_time() + self.drain_timeout
                        else:
                            self._stage_scope.cancel()
        finally:
            self._state = "done"
            logger.info("pipeline ended")
            self.counters.log(logger)
        if self._reader_errors:
            raise self._reader_errors[0]

    async def _send_marker(self, send_in: trio.MemorySendChannel[list[Entry] | SyncMarker]) -> None:
        """After every reader's initial entries: the marker, for the processors with ``synced`` (docs/design.md)."""
        if not any(r.synced is not None for r in self._routes):
            return
        order = {r.name: i for i, r in enumerate(self._readers)}
        syncs = [s.sync for s in sorted(self._started, key=lambda s: order[s.name])]
        if any(s is None for s in syncs):
            logger.debug("pipeline: a reader ended before its first sync: no synced() call")
            return
        await send_in.send(SyncMarker(tuple(s for s in syncs if s is not None)))

    def _reader_channel(
        self, reader: Reader, send_in: trio.MemorySendChannel[list[Entry] | SyncMarker],
    ) -> trio.MemorySendChannel[list[Entry]]:
        send = cast(trio.MemorySendChannel[list[Entry]], send_in.clone())
        m = self.metrics
        if m is None:
            return send
        name = reader.name
        # A reader with a status object reports its own position: no revision tracking per entry.
        revisions = not hasattr(reader, "status")
        return cast(trio.MemorySendChannel[list[Entry]],
                    tap_send(send, lambda chunk: m.reader_sent(name, chunk, revisions=revisions)))

    async def _run_reader(self, reader: Reader, send: trio.MemorySendChannel[list[Entry]]) -> None:
        status = _ReaderStarted(self, reader)
        self._started.append(status)
        try:
            async with send:
                await reader.run(send, self.counters, task_status=status)
            self._reader_states[reader.name] = "ended"
        except Exception as exc:  # noqa: BLE001 - kept, and raised by run() after the drain
            self._reader_states[reader.name] = "failed"
            self.counters.add(f"reader.{reader.name}.failed")
            # Not logged as an error here: run() raises it once the rest has drained, and
            # the caller (the CLI prints one line) says it; logging it too said it twice.
            logger.debug("reader %s failed: %s: %s", reader.name, type(exc).__name__, str(exc)[:256])
            self._reader_errors.append(exc)
            # Stop the others; what was read still drains to the processors.
            self._reader_scope.cancel()
        finally:
            if not status.done:
                # Ended (or failed) without reporting started: it will not, so do not wait for it.
                status.gave_up()
            logger.debug("reader %s ended", reader.name)

    async def _run_stages(self, recv_in: trio.MemoryReceiveChannel[list[Entry] | SyncMarker]) -> None:
        c = self.counters
        m = self.metrics
        with self._stage_scope:
            async with trio.open_nursery() as n:
                for route in self._routes:
                    if m is not None:
                        route.call = m.timed(route.name, route.processor)
                        m.channels[f"processor.{route.name}"] = route.receive
                    n.start_soon(self._run_processor, route)
                send_batch, recv_batch = trio.open_memory_channel[Batch | SyncMarker](0)
                n.start_soon(lambda: run_routing(recv_batch, self._routes, counters=c))
                send_safe, recv_safe = trio.open_memory_channel[list[Entry] | SyncMarker](0)
                if m is not None:
                    m.channels.update({"safety": recv_in, "routing": recv_batch,
                                       "preprocess" if self._preprocessors else "batching": recv_safe})
                    send_batch = cast(trio.MemorySendChannel[Batch | SyncMarker], tap_send(send_batch, m.batch_sent))
                    send_safe = cast(trio.MemorySendChannel[list[Entry] | SyncMarker],
                                     tap_send(send_safe, m.safety_sent))
                    recv_in = cast(trio.MemoryReceiveChannel[list[Entry] | SyncMarker],
                                   tap_receive(recv_in, m.safety_received, m.safety_settle))
                if self._preprocessors:
                    send_pre, recv_pre = trio.open_memory_channel[list[Entry] | SyncMarker](0)
                    n.start_soon(lambda: run_batching(
                        recv_pre, send_batch, window=self.batch_window, size=self.batch_size, counters=c,
                    ))
                    n.start_soon(lambda: run_preprocess(recv_safe, send_pre, list(self._preprocessors), counters=c))
                else:
                    n.start_soon(lambda: run_batching(
                        recv_safe, send_batch, window=self.batch_window, size=self.batch_size, counters=c,
                    ))
                n.start_soon(lambda: run_safety(recv_in, send_safe, counters=c, allow_secrets=self.allow_secrets,
                                                rules=self.redactor))

    async def _run_processor(self, route: Route) -> None:
        await run_processor(route, counters=self.counters, on_error=self._errors.append)
