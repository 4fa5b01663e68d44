"""Preprocessors: sync and async, in order, filters, and errors that drop one entry only."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from tattler_etcd.data import Entry
from tattler_etcd.pipeline import Runner
from tattler_etcd.readers.memory import MemoryReader
from tests.support.pipeline_objects import Collect, e, entry, obj, pod_spec


async def run_with(entries: list[Entry], *preprocessors) -> tuple[Runner, Collect]:
    runner = Runner()
    runner.add_reader(MemoryReader(entries))
    for fn in preprocessors:
        runner.add_preprocessor(fn)
    out = Collect()
    runner.add_processor("out", out)
    await runner.run()
    return runner, out


async def test_sync_and_async_run_in_order_and_see_scrubbed_objects(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[str] = []

    def strip_status(ent: Entry) -> Entry:
        seen.append(f"sync:{ent.name}:{ent.raw['spec']['containers'][0]['env'][0]['value']}")
        ent.raw.pop("status", None)
        return ent

    async def label(ent: Entry) -> Entry:
        await trio.sleep(1)
        seen.append(f"async:{ent.name}")
        ent.raw["metadata"]["labels"] = {"seen": "yes"}
        return ent

    pod = entry(obj("Pod", name="p", spec=pod_spec("s3cret"), status={"phase": "Running"}))
    _, out = await run_with([pod], strip_status, label)
    assert seen == ["sync:p:REDACTED", "async:p"]
    (got,) = out.entries
    assert "status" not in got.raw
    assert got.raw["metadata"]["labels"] == {"seen": "yes"}


async def test_returning_none_filters_and_a_new_entry_replaces(autojump_clock: trio.testing.MockClock) -> None:
    def only_even(entry: Entry) -> Entry | None:
        return entry if int(entry.uid[1:]) % 2 == 0 else None

    def rename(entry: Entry) -> Entry:
        return e(entry.uid, name=f"renamed-{entry.name}")

    runner, out = await run_with([e(f"u{i}") for i in range(5)], only_even, rename)
    assert [x.name for x in out.entries] == ["renamed-u0", "renamed-u2", "renamed-u4"]
    assert runner.counters.prefixed("preprocess") == {"dropped.filtered": 2, "in": 5, "out": 3}


async def test_a_raising_preprocessor_drops_that_entry_only(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    def picky(entry: Entry) -> Entry:
        if entry.uid == "u1":
            raise KeyError("spec")
        return entry

    async def wrong_type(entry: Entry) -> Entry:
        return "not an entry" if entry.uid == "u3" else entry  # type: ignore[return-value]

    with caplog.at_level(logging.WARNING, logger="tattler_etcd"):
        runner, out = await run_with([e(f"u{i}") for i in range(5)], picky, wrong_type)
    assert [x.uid for x in out.entries] == ["u0", "u2", "u4"]
    assert runner.counters["preprocess.dropped.error"] == 2
    assert [r.getMessage() for r in caplog.records] == [
        ("preprocess: dropped ConfigMap/ns/u1: preprocessor test_a_raising_preprocessor_drops_that_entry_only."
         "<locals>.picky raised KeyError: 'spec'"),
        ("preprocess: dropped ConfigMap/ns/u3: preprocessor test_a_raising_preprocessor_drops_that_entry_only."
         "<locals>.wrong_type raised TypeError: returned str, not an Entry or None"),
    ]


async def test_no_preprocessor_no_stage(autojump_clock: trio.testing.MockClock) -> None:
    runner, out = await run_with([e("u0")])
    assert len(out.entries) == 1
    assert runner.counters.prefixed("preprocess") == {}
