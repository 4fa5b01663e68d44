"""The APIServer reader end to end through the Runner (safety, batching, routing)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tattler_etcd.data import ChangeType
from tattler_etcd.pipeline import Runner, SyncInfo
from tattler_etcd.pipeline.safety import REDACTED
from tattler_etcd.pipeline.sync import ReaderSync, ResourceSync
from tattler_etcd.readers.apiserver import APIServerReader, Backoff, ClusterConfig
from tests.fake_apiserver import FakeCluster, open_fake_apiserver
from tests.fake_apiserver.objects import make_pod


@pytest.mark.parametrize("fmt", ["json", "protobuf"])
async def test_reader_through_the_runner(fmt: str, autojump_clock: Any) -> None:
    cluster = FakeCluster()
    for i in range(5):
        cluster.create("pods", make_pod(i))
    batches: list[list[Any]] = []
    got_update = trio.Event()

    async def collect(batch: Any) -> None:
        entries = list(batch)
        batches.append(entries)
        if any(e.change is ChangeType.UPDATE for e in entries):
            got_update.set()

    async with open_fake_apiserver(cluster) as srv:
        reader = APIServerReader(["pods"], config=ClusterConfig(srv.url), content_type=fmt,  # type: ignore[arg-type]
                                 backoff_factory=lambda: Backoff(rand=lambda: 0.0))
        runner = Runner(batch_window=1.0, batch_size=100)
        runner.add_reader(reader)
        runner.add_processor("collect", collect)
        with trio.fail_after(600):
            async with trio.open_nursery() as nursery:
                await nursery.start(runner.run)
                pod = cluster.get("pods", "pod-00002")
                assert pod is not None
                pod["status"]["phase"] = "Succeeded"
                cluster.update("pods", pod)
                await got_update.wait()
                runner.stop()
    entries = [e for b in batches for e in b]
    # A batch holds one entry per UID (the latest), so the ADD and the UPDATE
    # of pod-00002 may have been merged; the latest state is what counts.
    last = {e.name: e for e in entries}
    assert sorted(last) == [f"pod-{i:05d}" for i in range(5)]
    assert last["pod-00002"].change is ChangeType.UPDATE
    assert {e.change for n, e in last.items() if n != "pod-00002"} == {ChangeType.ADD}
    assert runner.counters["reader.apiserver.entries"] == 6
    for e in entries:
        # the safety stage redacted env values, whatever the wire format
        assert e.raw["spec"]["containers"][0]["env"] == [{"name": "MODE", "value": REDACTED}]
    assert next(e for e in entries if e.change is ChangeType.UPDATE).raw["status"]["phase"] == "Succeeded"


async def test_synced_gets_the_lists_resource_version(autojump_clock: Any) -> None:
    """A processor's synced(info): the APIServer reader's full list and that list's resourceVersion."""
    cluster = FakeCluster()
    for i in range(3):
        cluster.create("pods", make_pod(i))
    listed_at = str(cluster.rv)
    infos: list[SyncInfo] = []

    class Proc:
        async def __call__(self, batch: Any) -> None:
            pass

        async def synced(self, info: SyncInfo) -> None:
            infos.append(info)

    async with open_fake_apiserver(cluster) as srv:
        reader = APIServerReader(["pods"], config=ClusterConfig(srv.url),
                                 backoff_factory=lambda: Backoff(rand=lambda: 0.0))
        runner = Runner(batch_window=1.0)
        runner.add_reader(reader)
        runner.add_processor("proc", Proc())
        with trio.fail_after(600):
            async with trio.open_nursery() as nursery:
                await nursery.start(runner.run)
                while not infos:
                    await trio.sleep(0.1)
                runner.stop()
    [info] = infos
    assert info.readers == (ReaderSync("apiserver", (ResourceSync("pods", True, listed_at),)),)
    assert info.full_lists() == {"pods": listed_at}
