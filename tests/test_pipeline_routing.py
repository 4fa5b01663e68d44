"""Routing: BLOCK vs DROP with exact drop counts, slow processors, failing processors."""

from __future__ import annotations

import trio
import trio.testing

from tattler_etcd.errors import ProcessorError
from tattler_etcd.pipeline import Batch, Policy, Runner
from tattler_etcd.readers.memory import MemoryReader
from tests.support.pipeline_objects import Collect, e


class Timed:
    """A processor that records when each batch arrived and then works ``cost`` seconds on it."""

    def __init__(self, cost: float = 0.0) -> None:
        self.cost = cost
        self.times: list[float] = []
        self.seen: list[str] = []

    async def __call__(self, batch: Batch) -> None:
        self.times.append(trio.current_time())
        self.seen.extend(x.uid for x in batch)
        if self.cost:
            await trio.sleep(self.cost)


def one_entry_per_second(n: int) -> MemoryReader:
    # batch_size=1 below: each entry is its own batch, sent at t = 0, 1, ..., n-1.
    return MemoryReader([e(f"u{i}") for i in range(n)], chunk_size=1, pause=1.0)


async def test_drop_processor_loses_exactly_the_batches_it_is_busy_for(autojump_clock: trio.testing.MockClock) -> None:
    runner = Runner(batch_size=1)
    runner.add_reader(one_entry_per_second(25))
    fast, slow = Timed(), Timed(cost=9.5)
    runner.add_processor("fast", fast)
    runner.add_processor("slow", slow, policy=Policy.DROP)
    await runner.run()
    # slow takes the batch of t=0, is busy until 9.5, so t=1..9 are lost; it takes t=10
    # (busy until 19.5) and t=20 (busy until 29.5): 3 taken, 22 dropped.
    assert slow.seen == ["u0", "u10", "u20"]
    assert runner.counters["processor.slow.dropped"] == 22
    assert runner.counters["processor.slow.dropped_entries"] == 22
    assert runner.counters["processor.slow.batches"] == 3
    # ...and the BLOCK processor beside it got every batch the moment it was made.
    assert fast.times == [float(t) for t in range(25)]
    assert runner.counters["processor.fast.batches"] == 25
    assert "processor.fast.dropped" not in runner.counters


async def test_drop_processor_with_a_buffer(autojump_clock: trio.testing.MockClock) -> None:
    runner = Runner(batch_size=1)
    runner.add_reader(one_entry_per_second(25))
    slow = Timed(cost=9.25)
    runner.add_processor("slow", slow, policy=Policy.DROP, buffer=1)
    await runner.run()
    # t=0 taken (busy to 9.25), t=1 waits in the buffer, t=2..9 dropped (8); at 9.25 it takes
    # t=1 (busy to 18.5), t=10 waits, t=11..18 dropped (8); at 18.5 it takes t=10 (busy to
    # 27.75), t=19 waits, t=20..24 dropped (5); then t=19.
    assert slow.seen == ["u0", "u1", "u10", "u19"]
    assert runner.counters["processor.slow.dropped"] == 21


async def test_block_processor_slows_the_pipeline_down_to_the_reader(autojump_clock: trio.testing.MockClock) -> None:
    runner = Runner(batch_size=1)
    runner.add_reader(MemoryReader([e(f"u{i}") for i in range(4)], chunk_size=1))
    slow, other = Timed(cost=10.0), Timed()
    runner.add_processor("slow", slow)
    runner.add_processor("other", other)
    await runner.run()
    # The reader had everything at t=0; batches still come 10 s apart, and nothing is lost.
    assert slow.times == other.times == [0.0, 10.0, 20.0, 30.0]
    assert trio.current_time() == 40.0
    assert runner.counters["batching.batches"] == 4


async def test_processor_error_names_it_and_the_others_go_on(autojump_clock: trio.testing.MockClock) -> None:
    calls = 0

    async def flaky(batch: Batch) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ValueError("disk on fire")

    runner = Runner(batch_size=1)
    runner.add_reader(MemoryReader([e(f"u{i}") for i in range(4)], chunk_size=1))
    ok = Collect()
    runner.add_processor("flaky", flaky)
    runner.add_processor("ok", ok)
    await runner.run()
    assert [x.uid for x in ok.entries] == ["u0", "u1", "u2", "u3"]
    assert calls == 4  # it keeps getting batches after failing
    (err,) = runner.errors
    assert isinstance(err, ProcessorError)
    assert err.name == "flaky"
    assert str(err) == "processor 'flaky' failed: ValueError: disk on fire"
    assert isinstance(err.__cause__, ValueError)
    assert runner.counters.prefixed("processor.flaky") == {"batches": 3, "entries": 3, "errors": 1}


async def test_every_processor_gets_the_same_batches(autojump_clock: trio.testing.MockClock) -> None:
    runner = Runner(batch_size=3)
    runner.add_reader(MemoryReader([e(f"u{i}") for i in range(7)]))
    procs = [Collect() for _ in range(4)]
    for i, p in enumerate(procs):
        runner.add_processor(f"p{i}", p, policy=Policy.DROP if i % 2 else Policy.BLOCK, buffer=5)
    await runner.run()
    for p in procs:
        assert [len(b) for b in p.batches] == [3, 3, 1]
        assert [b is q for b, q in zip(p.batches, procs[0].batches, strict=True)] == [True] * 3
