"""Batching: by time and by size, dedupe by UID, grouping by source, flush at the end."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.pipeline.batching import Batch, run_batching, supersedes
from tattler_etcd.stats import Counters
from tests.support.pipeline_objects import e

ADD, UPDATE, DELETE, SNAPSHOT = ChangeType.ADD, ChangeType.UPDATE, ChangeType.DELETE, ChangeType.SNAPSHOT


class Harness:
    """The batching stage between a channel the test feeds and a list of (time, batch) it reads."""

    def __init__(self, nursery: trio.Nursery, *, window: float = 5.0, size: int = 1000) -> None:
        self.counters = Counters()
        self.send, recv_in = trio.open_memory_channel[list[Entry]](0)
        send_out, self.receive = trio.open_memory_channel[Batch](0)
        self.got: list[tuple[float, Batch]] = []
        self.done = trio.Event()
        nursery.start_soon(lambda: run_batching(recv_in, send_out, window=window, size=size, counters=self.counters))
        nursery.start_soon(self._collect)

    async def _collect(self) -> None:
        async with self.receive:
            async for batch in self.receive:
                self.got.append((trio.current_time(), batch))
        self.done.set()

    async def feed(self, *chunks: list[Entry]) -> None:
        for chunk in chunks:
            await self.send.send(chunk)

    async def finish(self) -> list[tuple[float, Batch]]:
        await self.send.aclose()
        await self.done.wait()
        return self.got


def names(batch: Batch) -> list[str]:
    return [x.name for x in batch]


async def test_window_closes_a_batch_counted_from_its_first_entry(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as n:
        h = Harness(n, window=5.0)
        await trio.sleep(2)  # an idle start opens no batch
        await h.feed([e("a")])
        await trio.sleep(3)
        await h.feed([e("b")])
        await trio.sleep(3)  # the first batch was sent at 2 + 5 = 7
        await h.feed([e("c")])
        got = await h.finish()
    assert [(t, names(b)) for t, b in got] == [(7.0, ["a", "b"]), (8.0, ["c"])]
    assert [b.seq for _, b in got] == [1, 2]


async def test_no_batch_while_idle(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as n:
        h = Harness(n, window=1.0)
        await h.feed([e("a")])
        await trio.sleep(100)
        assert len(h.got) == 1
        got = await h.finish()
    assert [(t, names(b)) for t, b in got] == [(1.0, ["a"])]


async def test_size_closes_a_batch_mid_chunk(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as n:
        h = Harness(n, window=5.0, size=3)
        await h.feed([e(f"u{i}") for i in range(7)])
        await trio.testing.wait_all_tasks_blocked()
        assert [(t, names(b)) for t, b in h.got] == [(0.0, ["u0", "u1", "u2"]), (0.0, ["u3", "u4", "u5"])]
        got = await h.finish()  # the rest goes at once when the input ends, not after the window
    assert [(t, names(b)) for t, b in got][2:] == [(0.0, ["u6"])]
    assert h.counters.prefixed("batching") == {"batches": 3, "in": 7, "out": 7}


async def test_size_counts_distinct_objects(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as n:
        h = Harness(n, window=5.0, size=2)
        await h.feed([e("a", "1"), e("a", "2"), e("a", "3"), e("b", "1")])
        got = await h.finish()
    assert [[(x.uid, x.resource_version) for x in b] for _, b in got] == [[("a", "3"), ("b", "1")]]
    assert h.counters["batching.dropped.duplicate"] == 2


async def test_dedupe_newest_resource_version_wins_numerically(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as n:
        h = Harness(n)
        # "10" > "9" as numbers (as strings it would lose); an older copy arriving late loses.
        await h.feed([e("a", "9"), e("b", "5")], [e("a", "10"), e("b", "4")])
        got = await h.finish()
    (_, batch), = got
    assert [(x.uid, x.resource_version) for x in batch] == [("b", "5"), ("a", "10")]


async def test_winner_takes_its_latest_arrival_place(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as n:
        h = Harness(n)
        await h.feed([e("a", "1"), e("b", "1"), e("c", "1"), e("a", "2")])
        got = await h.finish()
    assert names(got[0][1]) == ["b", "c", "a"]


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        ((UPDATE, "1"), (DELETE, "1"), 1),   # delete after an update of the same version
        ((UPDATE, "9"), (DELETE, "3"), 1),   # delete wins even with an older version
        ((DELETE, "3"), (UPDATE, "9"), 0),   # a change after the delete is a late copy
        ((DELETE, "3"), (DELETE, "4"), 1),   # two deletes: the newer
        ((ADD, "5"), (SNAPSHOT, "5"), 1),    # equal versions: the later arrival
        ((UPDATE, "abc"), (UPDATE, "abb"), 1),  # not numbers: the later arrival
        ((UPDATE, "7"), (UPDATE, "x"), 1),
    ],
)
def test_supersedes(first: tuple[ChangeType, str], second: tuple[ChangeType, str], winner: int) -> None:
    a = e("u", first[1], change=first[0])
    b = e("u", second[1], change=second[0])
    assert supersedes(b, a) is (winner == 1)


async def test_delete_wins_in_the_stage(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as n:
        h = Harness(n)
        await h.feed([e("a", "1", change=ADD), e("a", "2", change=UPDATE), e("a", "2", change=DELETE),
                      e("a", "3", change=UPDATE)])
        got = await h.finish()
    ((_, batch),) = got
    assert [(x.change, x.resource_version) for x in batch] == [(DELETE, "2")]


async def test_dedupe_is_per_batch(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as n:
        h = Harness(n, window=1.0)
        await h.feed([e("a", "1")])
        await trio.sleep(2)
        await h.feed([e("a", "2")])
        got = await h.finish()
    assert [[x.resource_version for x in b] for _, b in got] == [["1"], ["2"]]


async def test_batch_groups_by_source_in_arrival_order(autojump_clock: trio.testing.MockClock) -> None:
    api, etcd = SourceType.APISERVER, SourceType.ETCD
    async with trio.open_nursery() as n:
        h = Harness(n)
        await h.feed([e("a", source=api), e("b", source=etcd), e("c", source=api)], [e("d", source=etcd)])
        got = await h.finish()
    ((_, batch),) = got
    assert names(batch) == ["a", "b", "c", "d"]
    assert batch.sources == (api, etcd)
    assert {s: [x.name for x in g] for s, g in batch.by_source().items()} == {api: ["a", "c"], etcd: ["b", "d"]}
    assert len(batch) == 4 and batch.entries == tuple(batch)


async def test_entries_without_uid_are_kept_apart(autojump_clock: trio.testing.MockClock) -> None:
    x, y = e("", name="x"), e("", name="y")
    async with trio.open_nursery() as n:
        h = Harness(n)
        await h.feed([x, y])
        got = await h.finish()
    assert names(got[0][1]) == ["x", "y"]


async def test_back_pressure_holds_the_open_batch(autojump_clock: trio.testing.MockClock) -> None:
    # Nobody reads the output: the stage waits with its batch and takes no more input.
    counters = Counters()
    send_in, recv_in = trio.open_memory_channel[list[Entry]](0)
    send_out, recv_out = trio.open_memory_channel[Batch](0)
    async with trio.open_nursery() as n:
        n.start_soon(lambda: run_batching(recv_in, send_out, window=1.0, size=1, counters=counters))
        await send_in.send([e("a")])
        with trio.move_on_after(60) as scope:
            await send_in.send([e("b")])
        assert scope.cancelled_caught
        batch = await recv_out.receive()
        assert names(batch) == ["a"]
        n.cancel_scope.cancel()
