"""The first-sync marker: ``processor.synced(info)`` once, after every batch of the initial state, before later ones."""

from __future__ import annotations

import prometheus_client
import pytest
import trio
import trio.testing

from tattler_etcd.data import Entry
from tattler_etcd.errors import PermanentReaderError
from tattler_etcd.pipeline import Batch, Policy, Runner, SyncInfo
from tattler_etcd.pipeline.sync import ReaderSync, ResourceSync
from tattler_etcd.stats import Counters
from tests.support.pipeline_objects import Collect, e


class Reader:
    """Sends ``initial`` chunks, reports started, then (when ``later`` is set) sends one more and lingers."""

    def __init__(self, name: str, initial: list[list[str]], *, fail_before_start: bool = False) -> None:
        self.name = name
        self.initial = initial
        self.later = trio.Event()
        self.fail_before_start = fail_before_start

    async def run(self, send: trio.MemorySendChannel[list[Entry]], counters: Counters, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with send:
            for chunk in self.initial:
                await send.send([e(uid) for uid in chunk])
            if self.fail_before_start:
                raise PermanentReaderError("gone before its first sync")
            task_status.started()
            await self.later.wait()
            await send.send([e(f"{self.name}-later")])
            await trio.sleep_forever()


class Recorder:
    """Records each batch's uids and each synced() call, in order."""

    def __init__(self, delay: float = 0.0) -> None:
        self.events: list[tuple[str, object]] = []
        self.delay = delay

    async def __call__(self, batch: Batch) -> None:
        if self.delay:
            await trio.sleep(self.delay)
        self.events.append(("batch", [x.uid for x in batch]))

    async def synced(self, info: SyncInfo) -> None:
        self.events.append(("synced", info))

    def synced_calls(self) -> list[SyncInfo]:
        return [info for what, info in self.events if what == "synced"]  # type: ignore[misc]

    def uids_before_synced(self) -> set[str]:
        out: set[str] = set()
        for what, value in self.events:
            if what == "synced":
                return out
            out.update(value)  # type: ignore[arg-type]
        raise AssertionError("synced() was not called")


async def run_until(runner: Runner, readers: list[Reader], done: trio.Event | None = None) -> None:
    async with trio.open_nursery() as n:
        await n.start(runner.run)
        await trio.testing.wait_all_tasks_blocked()
        for r in readers:
            r.later.set()
        await trio.testing.wait_all_tasks_blocked()
        if done is not None:
            await done.wait()
        runner.stop()


async def test_synced_after_the_initial_entries_and_before_later_ones(autojump_clock: object) -> None:
    reader = Reader("r", [["a", "b"], ["c"]])
    rec = Recorder()
    runner = Runner(batch_window=3600.0)  # the marker, not the window, sends the initial batch
    runner.add_reader(reader)
    runner.add_processor("rec", rec)
    t0 = trio.current_time()
    async with trio.open_nursery() as n:
        await n.start(runner.run)
        await trio.testing.wait_all_tasks_blocked()
        assert rec.events == [("batch", ["a", "b", "c"]), ("synced", SyncInfo((ReaderSync("r"),)))]
        assert trio.current_time() - t0 < 1.0
        reader.later.set()
        await trio.testing.wait_all_tasks_blocked()
        runner.stop()
    assert rec.events[-1] == ("batch", ["r-later"])
    assert len(rec.synced_calls()) == 1
    assert runner.counters["processor.rec.synced"] == 1
    assert runner.counters["processor.rec.batches"] == 2


async def test_several_readers_and_processors(autojump_clock: object) -> None:
    readers = [Reader("one", [["a1"], ["a2"]]), Reader("two", [["b1", "b2", "b3"]])]
    first, second, plain = Recorder(), Recorder(), Collect()
    runner = Runner(batch_window=1.0, batch_size=2)
    for r in readers:
        runner.add_reader(r)
    runner.add_processor("first", first)
    runner.add_processor("plain", plain)
    runner.add_processor("second", second, buffer=3)
    await run_until(runner, readers)
    for rec in (first, second):
        calls = rec.synced_calls()
        assert len(calls) == 1
        assert [r.name for r in calls[0].readers] == ["one", "two"]
        assert calls[0].dropped is False
        assert rec.uids_before_synced() == {"a1", "a2", "b1", "b2", "b3"}
        after = [u for what, v in rec.events[rec.events.index(("synced", calls[0])):] if what == "batch"
                 for u in v]  # type: ignore[attr-defined]
        assert sorted(after) == ["one-later", "two-later"]
    # A processor without synced() gets the same batches, and nothing else.
    assert sorted(x.uid for b in plain.batches for x in b) == ["a1", "a2", "b1", "b2", "b3", "one-later", "two-later"]


async def test_the_marker_passes_the_preprocess_stage(autojump_clock: object) -> None:
    reader = Reader("r", [["a", "drop-me", "b"]])
    rec = Recorder()
    runner = Runner(batch_window=3600.0)
    runner.add_reader(reader)
    runner.add_preprocessor(lambda x: None if x.uid == "drop-me" else x)
    runner.add_processor("rec", rec)
    await run_until(runner, [reader])
    assert [what for what, _ in rec.events] == ["batch", "synced", "batch"]
    assert rec.uids_before_synced() == {"a", "b"}


async def test_a_drop_processor_that_lost_a_batch_is_told(autojump_clock: object) -> None:
    reader = Reader("r", [[f"x{i}"] for i in range(6)])
    slow, fast = Recorder(delay=10.0), Recorder()
    runner = Runner(batch_window=1.0, batch_size=1)
    runner.add_reader(reader)
    runner.add_processor("slow", slow, policy=Policy.DROP)
    runner.add_processor("fast", fast, policy=Policy.DROP, buffer=10)
    done = trio.Event()

    async def wait_for_slow() -> None:
        while not slow.synced_calls():
            await trio.sleep(1.0)
        done.set()

    async with trio.open_nursery() as n:
        n.start_soon(wait_for_slow)
        await run_until(runner, [reader], done)
    assert runner.counters["processor.slow.dropped"] > 0
    [info] = slow.synced_calls()
    assert info.dropped is True
    [info] = fast.synced_calls()
    assert info.dropped is False
    assert fast.uids_before_synced() == {f"x{i}" for i in range(6)}


async def test_no_synced_call_when_a_reader_ends_before_its_first_sync(autojump_clock: object) -> None:
    good, bad = Reader("good", [["a"]]), Reader("bad", [["b"]], fail_before_start=True)
    rec = Recorder()
    runner = Runner(batch_window=1.0)
    runner.add_reader(good)
    runner.add_reader(bad)
    runner.add_processor("rec", rec)
    with pytest.raises(PermanentReaderError):
        await runner.run()
    assert rec.synced_calls() == []
    assert {u for what, v in rec.events if what == "batch" for u in v} == {"a", "b"}  # type: ignore[attr-defined]


async def test_a_failing_synced_is_reported_and_the_run_goes_on(autojump_clock: object) -> None:
    class Failing(Recorder):
        async def synced(self, info: SyncInfo) -> None:
            raise ValueError("no")

    reader = Reader("r", [["a"]])
    rec = Failing()
    runner = Runner(batch_window=1.0)
    runner.add_reader(reader)
    runner.add_processor("rec", rec)
    await run_until(runner, [reader])
    assert runner.counters["processor.rec.errors"] == 1
    assert [err.name for err in runner.errors] == ["rec"]
    assert rec.events == [("batch", ["a"]), ("batch", ["r-later"])]


async def test_metrics_do_not_count_the_marker(autojump_clock: object) -> None:
    reader = Reader("r", [["a", "b"]])
    rec = Recorder()
    runner = Runner(batch_window=1.0)
    runner.add_reader(reader)
    runner.add_processor("rec", rec)
    registry = prometheus_client.CollectorRegistry()
    registry.register(runner.collector())
    await run_until(runner, [reader])
    assert registry.get_sample_value("tattler_batch_size_entries_count") == 2
    assert runner.metrics is not None and runner.metrics.safety_dropped == {}


def test_full_lists_leave_out_resumes_and_unknown_revisions() -> None:
    info = SyncInfo((
        ReaderSync("a", (ResourceSync("pods", True, "10"), ResourceSync("nodes", True, ""),
                         ResourceSync("secrets", True, "7"))),
        ReaderSync("b", (ResourceSync("pods", True, "12"), ResourceSync("secrets", False, ""))),
    ))
    assert info.full_lists() == {"pods": "12"}
    assert info.readers[0].full_list is True
    assert info.readers[1].full_list is False
    assert ReaderSync("memory").full_list is False
