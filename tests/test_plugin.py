"""The pytest plugin, used the way a user would: from a test in a temporary project."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "replay.md"

pytest_plugins = ["pytester"]

USER_TESTS = '''
import json

import pytest
import trio

from tattler_etcd.data import ChangeType
from tattler_etcd.pipeline import Batch


class CountChanges:
    """A user's processor: counts entries per change type."""

    def __init__(self):
        self.counts = {}

    async def __call__(self, batch: Batch) -> None:
        for entry in batch:
            self.counts[entry.change] = self.counts.get(entry.change, 0) + 1


async def test_my_processor_sees_the_recording(tattler_replay, autojump_clock):
    mine = CountChanges()
    result = await tattler_replay(processors={"mine": mine}, batch_size=1)
    assert sum(mine.counts.values()) == len(result.entries) > 0
    assert mine.counts[ChangeType.DELETE] > 0 and mine.counts[ChangeType.UPDATE] > 0
    assert {e.kind for e in result.entries} == {"Pod", "Node", "Namespace", "PersistentVolume"}
    assert result.info.resources == ("pods", "nodes", "namespaces", "persistentvolumes")
    # The batch window is virtual time: the whole replay took none of it on the wall clock.
    assert trio.current_time() < 60


async def test_batches_follow_the_window(tattler_replay, autojump_clock):
    small = await tattler_replay(batch_size=3)
    assert all(len(b) <= 3 for b in small.batches) and len(small.batches) > 1


async def test_preprocessors_run_and_secrets_never_show(tattler_replay, autojump_clock):
    seen = []

    def only_pods(entry):
        seen.append(entry.kind)
        return entry if entry.kind == "Pod" else None

    result = await tattler_replay(preprocessors=[only_pods])
    assert "Node" in seen and {e.kind for e in result.entries} == {"Pod"}
    text = json.dumps([e.to_json_dict() for e in result.entries])
    assert "REDACTED" in text and "DB_PASSWORD" in text


def test_from_a_plain_test(tattler_replay):
    assert len(tattler_replay.run(once=True).entries) > 0


async def test_on_the_wall_clock_is_refused(tattler_replay):
    with pytest.raises(RuntimeError, match="autojump_clock"):
        await tattler_replay()
'''


def test_the_fixture_works_in_a_user_project(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\nfilterwarnings = error\n")
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)


def test_a_failing_user_assertion_fails(pytester: pytest.Pytester) -> None:
    # The fixture must not swallow failures: a wrong expectation about the recording fails.
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(test_wrong="""
async def test_expects_secrets(tattler_replay, autojump_clock):
    result = await tattler_replay()
    assert any(e.kind == "Secret" for e in result.entries)
""")
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)


def test_the_documented_example_passes(pytester: pytest.Pytester) -> None:
    text = DOC.read_text()
    example = text[text.index("A complete example"):]
    ini = re.search(r"```ini\n(.*?)```", example, re.DOTALL)
    code = re.search(r"```python\n(.*?)```", example, re.DOTALL)
    assert ini and code
    pytester.makefile(".ini", pytest=ini.group(1))
    pytester.makepyfile(test_pod_counter=code.group(1))
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=2)
