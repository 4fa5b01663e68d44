"""The ``tattler_replay`` fixture's harness (see :mod:`tattler_etcd.pytest_plugin`, which documents it).

Here, apart from the plugin, because pytest loads the plugin (entry point
``pytest11``) in every test session of every project that installs
tattler-etcd, whether or not a test asks for the fixture: this module, with
the pipeline and the replay machinery it imports (~0.4 s), loads only when
one does.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import trio
import trio.testing

from tattler_etcd.data import Entry
from tattler_etcd.errors import ProcessorError
from tattler_etcd.pipeline import Batch, Preprocessor, Processor, Runner
from tattler_etcd.replay import RecordingInfo, bundled_recording, replay_into, run_replay

__all__ = ["ReplayHarness", "ReplayResult"]


@dataclasses.dataclass
class ReplayResult:
    """What one replay delivered.

    Attributes:
        batches: every batch the processors received, in the order sent.
        counters: the runner's counters at the end (``safety.dropped.secret``...).
        errors: processor errors (each names its processor); a failing
            processor does not stop the replay.
        info: what the recording says about itself (resources, source...).
    """

    batches: list[Batch]
    counters: dict[str, int]
    errors: list[ProcessorError]
    info: RecordingInfo

    @property
    def entries(self) -> list[Entry]:
        """Every entry of every batch, in delivery order."""
        return [e for b in self.batches for e in b]

    def by_kind(self, kind: str) -> list[Entry]:
        """The delivered entries of one kind (``"Pod"``), in delivery order."""
        return [e for e in self.entries if e.kind == kind]


class ReplayHarness:
    """The ``tattler_replay`` fixture: call it (async) or :meth:`run` it (sync)."""

    @property
    def bundled(self) -> Path:
        """The recording shipped with tattler-etcd (the default)."""
        return bundled_recording()

    async def __call__(
        self,
        recording: str | os.PathLike[str] | None = None,
        *,
        processors: Mapping[str, Processor] | None = None,
        preprocessors: Sequence[Preprocessor] = (),
        batch_window: float = 5.0,
        batch_size: int = 1000,
        allow_secrets: bool = False,
        resources: Iterable[str] | None = None,
        once: bool = False,
    ) -> ReplayResult:
        """Replay ``recording`` (default: the bundled one) to the end; return what was delivered.

        ``processors`` are added under their names beside a collector that
        keeps every batch for the result. Needs trio's autojump clock.

        Raises:
            RuntimeError: the test runs on the wall clock (ask for ``autojump_clock``).
            tattler_etcd.errors.RecordingError: a bad recording.
        """
        clock = trio.lowlevel.current_clock()
        if not isinstance(clock, trio.testing.MockClock) or clock.autojump_threshold != 0:
            raise RuntimeError(
                "tattler_replay needs trio's virtual clock: add the autojump_clock fixture to the test "
                "(or call tattler_replay.run(...) from a plain test)"
            )
        return await self._replay(
            recording, processors=processors, preprocessors=preprocessors, batch_window=batch_window,
            batch_size=batch_size, allow_secrets=allow_secrets, resources=resources, once=once,
        )

    def run(self, recording: str | os.PathLike[str] | None = None, **kwargs: Any) -> ReplayResult:
        """The same as awaiting the harness, from a sync test (starts trio on a virtual clock)."""
        async def main() -> ReplayResult:
            return await self._replay(recording, **kwargs)

        return run_replay(main)

    async def _replay(
        self,
        recording: str | os.PathLike[str] | None,
        *,
        processors: Mapping[str, Processor] | None = None,
        preprocessors: Sequence[Preprocessor] = (),
        batch_window: float = 5.0,
        batch_size: int = 1000,
        allow_secrets: bool = False,
        resources: Iterable[str] | None = None,
        once: bool = False,
    ) -> ReplayResult:
        path = self.bundled if recording is None else recording
        runner = Runner(batch_window=batch_window, batch_size=batch_size, allow_secrets=allow_secrets)
        batches: list[Batch] = []

        async def collect(batch: Batch) -> None:
            batches.append(batch)

        runner.add_processor("tattler_replay", collect)
        for name, proc in (processors or {}).items():
            runner.add_processor(name, proc)
        for fn in preprocessors:
            runner.add_preprocessor(fn)
        info = await replay_into(runner, path, resources=resources, once=once)
        return ReplayResult(batches=batches, counters=runner.counters.snapshot(), errors=runner.errors, info=info)
