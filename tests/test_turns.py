"""readers.turns: a reader turning a page around goes before the pipeline's long CPU loops."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.pipeline.safety import run_safety
from tattler_etcd.readers import turns
from tattler_etcd.readers.etcd import EtcdReader
from tattler_etcd.stats import Counters
from tests.support.etcd import EtcdServer
from tests.support.etcd_reading import key, obj


async def test_nobody_holds_the_turn_so_waiting_is_a_checkpoint() -> None:
    with trio.testing.assert_checkpoints():
        await turns.wait_turn()


async def test_a_loop_waits_while_the_turn_is_held_nested_and_goes_on_at_the_last_release() -> None:
    went_on = trio.Event()

    async def loop() -> None:
        await turns.wait_turn()
        went_on.set()

    turns.hold()
    turns.hold()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loop)
        await trio.testing.wait_all_tasks_blocked()
        turns.release()
        await trio.testing.wait_all_tasks_blocked()
        assert not went_on.is_set()
        turns.release()
        await went_on.wait()
    with pytest.raises(RuntimeError, match="without hold"):
        turns.release()


async def test_a_turn_never_released_delays_the_loops_only_a_little(autojump_clock: trio.abc.Clock) -> None:
    turns.hold()
    start = trio.current_time()
    await turns.wait_turn()
    assert trio.current_time() - start == pytest.approx(turns.MAX_WAIT)
    turns.release()


def _pods(n: int) -> list[Entry]:
    return [Entry.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}", "uid": f"u{i}"},
                             "spec": {"containers": [{"name": "c", "env": [{"name": "E", "value": "s3cret"}]}]}},
                            change=ChangeType.ADD, source=SourceType.ETCD, key=f"/registry/pods/ns/p{i}")
            for i in range(n)]


async def test_the_safety_stage_pauses_within_a_chunk_while_a_reader_holds_the_turn() -> None:
    send_in, recv_in = trio.open_memory_channel[list[Entry]](1)
    send_out, recv_out = trio.open_memory_channel[list[Entry]](1)
    counters = Counters()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: run_safety(recv_in, send_out, counters=counters))
        turns.hold()
        await send_in.send(_pods(300))
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.WouldBlock):
            recv_out.receive_nowait()  # parked between two slices, the chunk not done
        turns.release()
        chunk = await recv_out.receive()
        assert len(chunk) == 300 and all(e.raw["spec"]["containers"][0]["env"][0]["value"] == "REDACTED"
                                         for e in chunk)
        await send_in.aclose()
    assert counters.get("safety.out") == 300


async def test_the_etcd_list_holds_the_turn_once_a_page_and_gives_it_back(
    etcd: EtcdServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    etcd.put_many([(key("pods", f"p{i:02d}", "ns"), obj("pods", f"p{i:02d}", "ns")) for i in range(25)])
    held: list[str] = []
    hold, release = turns.hold, turns.release
    monkeypatch.setattr(turns, "hold", lambda: (held.append("hold"), hold())[1])
    monkeypatch.setattr(turns, "release", lambda: (held.append("release"), release())[1])
    reader = EtcdReader(etcd.url, resources=["pods"], page_size=10, once=True)
    send, recv = trio.open_memory_channel[list[Entry]](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.run, send, Counters())
        got = [e.key async for chunk in recv for e in chunk]
        await turns.wait_turn()  # nobody holds it any more: a checkpoint
    assert len(got) == 25
    assert held == ["hold", "release"] * 3  # from each page's arrival to the next request (or the end)
