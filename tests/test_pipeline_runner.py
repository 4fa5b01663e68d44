"""The runner: registration, start-up, drain and shutdown order, stop, cancellation, reader failure."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import types

import pytest
import trio
import trio.testing

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.errors import ConfigError, PermanentReaderError, RegistrationError
from tattler_etcd.pipeline import Batch, JsonLinesProcessor, Policy, Runner
from tattler_etcd.readers import Reader
from tattler_etcd.readers.memory import MemoryReader
from tattler_etcd.stats import Counters
from tests.support.pipeline_objects import Collect, e, entry, obj, pod_spec


class GatedReader:
    """Sends one chunk, waits for ``gate``, reports started, sends another, then lingers or fails."""

    def __init__(self, name: str, *, fail: BaseException | None = None, linger: bool = True) -> None:
        self.name = name
        self.gate = trio.Event()
        self.fail = fail
        self.linger = linger
        self.closed = False

    async def run(self, send: trio.MemorySendChannel[list[Entry]], counters: Counters, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with send:
                await send.send([e(f"{self.name}-1")])
                await self.gate.wait()
                task_status.started()
                await send.send([e(f"{self.name}-2")])
                if self.fail is not None:
                    raise self.fail
                if self.linger:
                    await trio.sleep_forever()
        finally:
            self.closed = True


def count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


# -- registration -------------------------------------------------------------


def test_registration_errors() -> None:
    runner = Runner()
    runner.add_processor("out", Collect())
    with pytest.raises(RegistrationError, match=r"^a processor named 'out' was already added$"):
        runner.add_processor("out", Collect())
    with pytest.raises(RegistrationError, match=r"^processor name must be letters, digits, '-' or '_': 'a.b'$"):
        runner.add_processor("a.b", Collect())
    with pytest.raises(RegistrationError, match=r"^processor 'p' is not callable: int$"):
        runner.add_processor("p", 3)  # type: ignore[arg-type]
    with pytest.raises(RegistrationError, match=r"^processor 'p': policy must be a Policy, not 'drop'$"):
        runner.add_processor("p", Collect(), policy="drop")  # type: ignore[arg-type]
    with pytest.raises(RegistrationError, match=r"^not a reader \(needs name and run\): object$"):
        runner.add_reader(object())  # type: ignore[arg-type]
    runner.add_reader(MemoryReader([], name="r"))
    with pytest.raises(RegistrationError, match=r"^a reader named 'r' was already added$"):
        runner.add_reader(MemoryReader([], name="r"))
    with pytest.raises(RegistrationError, match=r"^a preprocessor must be callable, not str$"):
        runner.add_preprocessor("x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_window": 0}, "batch_window must be more than 0 seconds, not 0"),
        ({"batch_size": 0}, "batch_size must be at least 1, not 0"),
        ({"drain_timeout": -1}, "drain_timeout must be 0 or more seconds, not -1"),
    ],
)
def test_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        Runner(**kwargs)


async def test_run_needs_readers_and_processors_and_runs_once() -> None:
    with pytest.raises(RegistrationError, match=r"^add a reader before run\(\)$"):
        await Runner().run()
    runner = Runner()
    runner.add_reader(MemoryReader([]))
    with pytest.raises(RegistrationError, match=r"^add a processor before run\(\)$"):
        await runner.run()
    runner.add_processor("out", Collect())
    await runner.run()
    with pytest.raises(RegistrationError, match=r"^a Runner runs once$"):
        await runner.run()
    with pytest.raises(RegistrationError, match=r"^cannot add a processor after run\(\) started$"):
        runner.add_processor("late", Collect())


def test_memory_reader_is_a_reader() -> None:
    assert isinstance(MemoryReader([]), Reader)


# -- running ------------------------------------------------------------------


async def test_started_once_every_reader_has_started(autojump_clock: trio.testing.MockClock) -> None:
    a, b = GatedReader("a"), GatedReader("b")
    runner = Runner(batch_window=1.0)
    runner.add_reader(a)
    runner.add_reader(b)
    out = Collect()
    runner.add_processor("out", out)
    async with trio.open_nursery() as n:
        started = False

        async def start() -> None:
            nonlocal started
            await n.start(runner.run)
            started = True

        n.start_soon(start)
        await trio.testing.wait_all_tasks_blocked()
        a.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert not started
        b.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert started
        await trio.sleep(2)
        # Counters are readable while the run goes on.
        assert runner.counters["processor.out.entries"] == 4
        runner.stop()
    assert sorted(x.name for x in out.entries) == ["a-1", "a-2", "b-1", "b-2"]
    assert a.closed and b.closed


async def test_readers_ending_drain_every_stage_in_order(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    runner = Runner(batch_window=60.0, batch_size=1000)
    runner.add_reader(MemoryReader([e(f"u{i}") for i in range(10)], name="one", chunk_size=3))
    runner.add_reader(MemoryReader([e(f"v{i}") for i in range(5)], name="two"))
    runner.add_preprocessor(lambda x: x)
    out, other = Collect(), Collect()
    runner.add_processor("out", out)
    runner.add_processor("other", other, policy=Policy.DROP)
    with caplog.at_level(logging.DEBUG, logger="tattler_etcd.pipeline"):
        await runner.run()
    # Nothing waited for the 60 s window: the end of input flushed the open batch.
    assert trio.current_time() == 0.0
    assert len(out.entries) == len(other.entries) == 15
    closed = [m for m in (r.getMessage() for r in caplog.records) if m.startswith("stage ")]
    assert closed[:4] == ["stage safety closed", "stage preprocess closed", "stage batching closed",
                          "stage routing closed"]
    assert sorted(closed[4:]) == ["stage processor other closed", "stage processor out closed"]
    logged = {r.getMessage() for r in caplog.records}
    assert "counter processor.out.entries = 15" in logged  # counters logged at the end


async def test_cancelling_leaves_no_task_or_thread(autojump_clock: trio.testing.MockClock) -> None:
    threads = threading.active_count()
    tasks = count_tasks()
    reader = GatedReader("r")
    reader.gate.set()
    runner = Runner(batch_window=1.0)
    runner.add_reader(reader)
    out = Collect()
    runner.add_processor("out", out)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as n:
            await n.start(runner.run)
            assert count_tasks() > tasks
            await trio.sleep(5)
            scope.cancel()
    assert scope.cancelled_caught
    assert reader.closed
    assert count_tasks() == tasks
    assert threading.active_count() == threads
    assert [x.name for x in out.entries] == ["r-1", "r-2"]


async def test_cancel_gives_the_stages_drain_timeout_to_deliver(autojump_clock: trio.testing.MockClock) -> None:
    reader = GatedReader("r")
    reader.gate.set()
    times: list[float] = []

    async def slow(batch: Batch) -> None:
        await trio.sleep(3)
        times.append(trio.current_time())

    runner = Runner(batch_size=1, drain_timeout=10.0)
    runner.add_reader(reader)
    runner.add_processor("slow", slow)
    with trio.move_on_after(1):
        await runner.run()
    # Cancelled at t=1 with r-1 in the processor and r-2 waiting: both delivered, by t=6.
    assert times == [3.0, 6.0]
    assert trio.current_time() == 6.0


async def test_drain_timeout_bounds_the_drain(autojump_clock: trio.testing.MockClock) -> None:
    reader = GatedReader("r")
    reader.gate.set()
    times: list[float] = []

    async def stuck(batch: Batch) -> None:
        await trio.sleep(100)
        times.append(trio.current_time())

    runner = Runner(batch_size=1, drain_timeout=2.0)
    runner.add_reader(reader)
    runner.add_processor("stuck", stuck)
    with trio.move_on_after(1):
        await runner.run()
    assert times == []
    assert trio.current_time() == 3.0


async def test_reader_failure_stops_the_others_drains_then_raises(autojump_clock: trio.testing.MockClock) -> None:
    bad = GatedReader("bad", fail=PermanentReaderError("pods: gone for good"))
    good = GatedReader("good")
    bad.gate.set()
    good.gate.set()
    runner = Runner(batch_window=30.0)
    runner.add_reader(good)
    runner.add_reader(bad)
    out = Collect()
    runner.add_processor("out", out)
    with pytest.raises(PermanentReaderError, match=r"^pods: gone for good$"):
        await runner.run()
    assert good.closed
    assert sorted(x.name for x in out.entries) == ["bad-1", "bad-2", "good-1", "good-2"]
    assert runner.counters["reader.bad.failed"] == 1


async def test_stop_before_run_ends_at_once(autojump_clock: trio.testing.MockClock) -> None:
    runner = Runner()
    runner.add_reader(MemoryReader([e("a")], linger=True))
    out = Collect()
    runner.add_processor("out", out)
    runner.stop()
    await runner.run()
    assert out.entries == []


# -- the JSON-lines processor --------------------------------------------------


async def test_json_lines_end_to_end(autojump_clock: trio.testing.MockClock) -> None:
    pod = entry(obj("Pod", name="p", uid="u-p", rv="12", spec=pod_spec("s3cret")), change=ChangeType.UPDATE)
    gone = e("u-c", "3", change=ChangeType.DELETE, source=SourceType.APISERVER, name="c")
    secret = entry(obj("Secret", name="s", data={"k": "dg=="}))
    buf = io.StringIO()
    runner = Runner()
    runner.add_reader(MemoryReader([pod, gone, secret]))
    proc = JsonLinesProcessor(buf)
    runner.add_processor("output", proc)
    await runner.run()
    lines = buf.getvalue().splitlines()
    assert proc.written == len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert list(first) == ["change", "source", "uid", "apiVersion", "kind", "namespace", "name",
                           "resourceVersion", "object"]
    assert {k: v for k, v in first.items() if k != "object"} == {
        "change": "update", "source": "etcd", "uid": "u-p", "apiVersion": "v1", "kind": "Pod",
        "namespace": "ns", "name": "p", "resourceVersion": "12",
    }
    assert first["object"]["spec"]["containers"][0]["env"][0]["value"] == "REDACTED"
    assert (second["change"], second["source"], second["name"]) == ("delete", "apiserver", "c")
    assert "s3cret" not in buf.getvalue()


async def test_json_lines_skips_what_cannot_be_decoded(caplog: pytest.LogCaptureFixture) -> None:
    bad = Entry(change=ChangeType.ADD, source=SourceType.ETCD, uid="u", api_version="v1", kind="Pod",
                namespace="ns", name="junk", resource_version="1", value=b"k8s\x00\x0a\xff")
    buf = io.StringIO()
    proc = JsonLinesProcessor(buf)
    await proc(Batch([e("a"), bad, e("b")]))
    assert [json.loads(x)["name"] for x in buf.getvalue().splitlines()] == ["a", "b"]
    assert proc.skipped == 1
    assert any(r.getMessage().startswith("json-lines: skipped Pod/ns/junk: ") for r in caplog.records)


# -- the memory reader ----------------------------------------------------------


async def test_memory_reader_chunks() -> None:
    items = [e("a"), e("b"), e("c"), [e("d")], e("f")]
    send, receive = trio.open_memory_channel[list[Entry]](10)
    counters = Counters()
    await MemoryReader(items, name="m", chunk_size=2).run(send, counters)
    got = [[x.uid for x in chunk] async for chunk in receive]
    assert got == [["a", "b"], ["c"], ["d"], ["f"]]
    assert counters.prefixed("reader.m") == {"chunks": 4, "entries": 5}


def test_pipeline_all_is_complete() -> None:
    from tattler_etcd import pipeline

    # ("@py_builtins"/"@pytest_ar": pytest's assertion rewriting, which the pytest11 plugin turns on for the package)
    # (submodules are attributes of the package once imported, not names it exports)
    public = {
        n for n, v in vars(pipeline).items() if not n.startswith(("_", "@")) and not isinstance(v, types.ModuleType)
    } - {"annotations"}
    # (its order is ruff's RUF022)
    assert set(pipeline.__all__) == public


class BrokenPipeOut(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


async def test_json_lines_stops_the_runner_when_the_output_goes_away(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = Runner(batch_size=1)
    runner.add_reader(MemoryReader([e("a"), e("b")], chunk_size=1, linger=True))
    proc = JsonLinesProcessor(BrokenPipeOut(), on_closed=runner.stop)
    runner.add_processor("output", proc)
    with trio.fail_after(60):
        await runner.run()  # a lingering reader: only on_closed ends this run
    assert proc.closed
    assert proc.written == 0
    # Every entry that reached it was lost, none written, and nothing reported as an error.
    assert proc.lost == runner.counters["processor.output.entries"] >= 1
    assert runner.errors == []
