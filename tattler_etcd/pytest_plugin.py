"""pytest plugin: replay a recording through a Runner with your processors, in a few lines.

Installed with tattler-etcd (entry point ``pytest11``), so the fixture is there
in any test session once the package is installed::

    async def test_counts_pods(tattler_replay, autojump_clock):
        result = await tattler_replay(processors={"mine": MyProcessor()})
        assert result.entries  # every batch the processors got, in order

The replay is the real reader against the recording (vcrpy answers, no
network), through the real pipeline (safety, your preprocessors, batching,
routing). Batch windows are virtual time: an async test must ask for trio's
``autojump_clock`` (pytest-trio), and the fixture checks that it did, since
on the wall clock batch boundaries would depend on the machine's speed. A
plain (sync) test can call :meth:`ReplayHarness.run` instead, which starts
trio on a virtual clock itself. See ``docs/replay.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tattler_etcd.replay._harness import ReplayHarness as ReplayHarness
    from tattler_etcd.replay._harness import ReplayResult as ReplayResult
else:
    from tattler_etcd._lazy import lazy_exports

    # pytest loads this module in every session where tattler-etcd is installed:
    # the harness (trio, the pipeline, vcrpy: ~0.4 s) only for a test that uses it.
    __getattr__, __dir__ = lazy_exports(globals(), {
        "ReplayHarness": "tattler_etcd.replay._harness",
        "ReplayResult": "tattler_etcd.replay._harness",
    })

__all__ = ["ReplayHarness", "ReplayResult", "tattler_replay"]


@pytest.fixture
def tattler_replay() -> ReplayHarness:
    """Replay a recording (default: the bundled one) through a Runner; see :class:`ReplayHarness`."""
    from tattler_etcd.replay._harness import ReplayHarness  # (see the lazy exports above)

    return ReplayHarness()
