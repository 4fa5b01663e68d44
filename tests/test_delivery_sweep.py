"""The KV sweep: after a fresh start's first sync, keys of objects deleted while no tattler-etcd ran are deleted.

Real etcd, the real EtcdReader, the Runner, NatsProcessor and a real nats-server.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.delivery.nats import NatsProcessor, open_nats_processor
from tattler_etcd.pipeline import Policy, Runner
from tattler_etcd.pipeline.sync import ReaderSync, ResourceSync, SyncInfo
from tattler_etcd.readers.etcd import EtcdReader
from tests.support.etcd import EtcdServer
from tests.support.etcd_reading import key, obj
from tests.support.nats import NatsServer, kv_state, stream_messages
from tests.test_delivery_etcd_nats import expected_kv

pytestmark = [pytest.mark.etcd, pytest.mark.nats]


def seed(etcd: EtcdServer, names: list[str]) -> int:
    return etcd.put_many([(key("pods", n, "ns"), obj("pods", n, "ns")) for n in names])


def pod_entry(name: str, rv: int, uid: str) -> Entry:
    """A pod as a replica would have delivered it (tests write keys etcd has no object for)."""
    raw = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": str(rv)}}
    return Entry(change=ChangeType.ADD, source=SourceType.ETCD, uid=uid, api_version="v1", kind="Pod",
                 namespace="ns", name=name, resource_version=str(rv), raw=raw)


async def deliver_once(etcd: EtcdServer, url: str, **reader: object) -> NatsProcessor:
    """One run: list (or resume), deliver, sweep, end (``--once``)."""
    async with open_nats_processor(url) as proc:
        runner = Runner(batch_window=0.05)
        runner.add_reader(EtcdReader(etcd.url, resources=["pods"], once=True, **reader))  # type: ignore[arg-type]
        runner.add_processor("nats", proc)
        await runner.run()
        assert runner.errors == []
        return proc


async def deliver_and_stop(etcd: EtcdServer, url: str, **reader: object) -> tuple[NatsProcessor, list[SyncInfo]]:
    """One live run (no ``--once``: a revision file is resumed from), stopped once synced() was called."""
    infos: list[SyncInfo] = []
    async with open_nats_processor(url) as proc:
        class Spy:
            async def __call__(self, batch: object) -> None:
                await proc(batch)  # type: ignore[arg-type]

            async def synced(self, info: SyncInfo) -> None:
                infos.append(info)
                await proc.synced(info)

        runner = Runner(batch_window=0.05)
        runner.add_reader(EtcdReader(etcd.url, resources=["pods"], **reader))  # type: ignore[arg-type]
        runner.add_processor("nats", Spy())
        async with trio.open_nursery() as n:
            await n.start(runner.run)
            while not infos:
                await trio.sleep(0.05)
            runner.stop()
        return proc, infos


def kv_now(url: str) -> dict[str, tuple[str, str]]:
    return {k: (v["uid"], v["resourceVersion"]) for k, v in trio.run(kv_state, url).items()}


def test_a_fresh_start_sweeps_keys_of_objects_gone_while_nothing_ran(etcd: EtcdServer,
                                                                   nats_server: NatsServer) -> None:
    seed(etcd, ["a", "b", "c", "d"])
    first = trio.run(deliver_once, etcd, nats_server.url)
    assert first.swept == 0
    assert kv_now(nats_server.url) == expected_kv(etcd)
    etcd.delete(key("pods", "b", "ns"))
    etcd.delete(key("pods", "c", "ns"))
    newest = etcd.put(key("pods", "e", "ns"), obj("pods", "e", "ns"))

    async def another_replica() -> None:
        # A key written by another replica at a version after the next list: it must stay.
        async with open_nats_processor(nats_server.url) as proc:
            await proc([pod_entry("later", newest + 1000, "uid-later")])

    trio.run(another_replica)
    second = trio.run(deliver_once, etcd, nats_server.url)
    assert second.swept == 2
    assert second.delivery_counts()["swept"] == 2
    want = expected_kv(etcd)
    want["pods.ns.later"] = ("uid-later", str(newest + 1000))
    assert kv_now(nats_server.url) == want
    deletes = [(subject, body) for subject, headers, body in trio.run(stream_messages, nats_server.url)
               if headers.get("Tattler-Change") == "delete"]
    assert sorted(s for s, _ in deletes) == ["tattler.pods.ns.b", "tattler.pods.ns.c"]
    assert all(body["kind"] == "Pod" and body["object"]["metadata"]["name"] in ("b", "c") for _, body in deletes)
    # A third fresh start finds nothing to sweep (the markers are deletes already).
    assert trio.run(deliver_once, etcd, nats_server.url).swept == 0


def test_a_resume_sweeps_nothing(etcd: EtcdServer, nats_server: NatsServer, tmp_path: Path) -> None:
    seed(etcd, ["a", "b"])
    revisions = tmp_path / "revisions.json"
    _, [info] = trio.run(lambda: deliver_and_stop(etcd, nats_server.url, revision_file=revisions))
    assert revisions.exists()
    [resource] = info.readers[0].resources
    assert resource.full_list and resource.resource == "pods" and resource.revision.isdigit()

    async def stray() -> None:
        async with open_nats_processor(nats_server.url) as proc:
            await proc([pod_entry("stray", 2, "uid-stray")])

    trio.run(stray)
    proc, [info] = trio.run(lambda: deliver_and_stop(etcd, nats_server.url, revision_file=revisions))
    assert info.readers[0].resources == (ResourceSync("pods", False, ""),)
    assert proc.swept == 0
    assert "pods.ns.stray" in kv_now(nats_server.url)


def test_no_sweep_after_a_drop_or_for_an_unlisted_resource(etcd: EtcdServer, nats_server: NatsServer) -> None:
    rev = seed(etcd, ["a"])

    async def main() -> None:
        async with open_nats_processor(nats_server.url) as proc:
            await proc([pod_entry("gone", 2, "uid-gone")])
        async with open_nats_processor(nats_server.url) as proc:
            listed = SyncInfo((ReaderSync("etcd", (ResourceSync("pods", True, str(rev)),)),), dropped=True)
            await proc.synced(listed)
            assert proc.swept == 0
        async with open_nats_processor(nats_server.url) as proc:
            await proc.synced(SyncInfo((ReaderSync("etcd", (ResourceSync("configmaps", True, str(rev)),
                                                             ResourceSync("pods", True, ""))),)))
            assert proc.swept == 0
        async with open_nats_processor(nats_server.url) as proc:
            # The same info without the drop: swept (synced() is called once; a second call does nothing).
            await proc.synced(SyncInfo((ReaderSync("etcd", (ResourceSync("pods", True, str(rev)),)),)))
            assert proc.swept == 1
            await proc.synced(SyncInfo((ReaderSync("etcd", (ResourceSync("pods", True, str(rev)),)),)))
            assert proc.swept == 1

    trio.run(main)
    assert "pods.ns.gone" not in kv_now(nats_server.url)


def test_a_drop_policy_processor_that_dropped_does_not_sweep(etcd: EtcdServer, nats_server: NatsServer) -> None:
    seed(etcd, [f"p{i}" for i in range(30)])

    async def main() -> int:
        async with open_nats_processor(nats_server.url) as proc:
            await proc([pod_entry("gone", 2, "uid-gone")])
        async with open_nats_processor(nats_server.url) as proc:
            async def slow(batch: object) -> None:
                await trio.sleep(0.5)
                await proc(batch)  # type: ignore[arg-type]

            slow.synced = proc.synced  # type: ignore[attr-defined]
            runner = Runner(batch_window=0.01, batch_size=1)
            runner.add_reader(EtcdReader(etcd.url, resources=["pods"], once=True, page_size=1))
            runner.add_processor("nats", slow, policy=Policy.DROP)
            await runner.run()
            assert runner.counters["processor.nats.dropped"] > 0
            return proc.swept

    assert trio.run(main) == 0
    assert "pods.ns.gone" in kv_now(nats_server.url)


@pytest.mark.slow
def test_the_cli_sweeps_on_a_fresh_start(etcd: EtcdServer, nats_server: NatsServer) -> None:
    """``tattler-etcd run --once ... --to nats://`` twice, a pod deleted in between, no index file."""
    seed(etcd, ["a", "b", "c"])
    cmd = [sys.executable, "-m", "tattler_etcd", "run", "--etcd-endpoints", etcd.url, "--resources", "pods",
           "--once", "--batch-window", "0.1", "-v", "--to", nats_server.url]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    assert kv_now(nats_server.url) == expected_kv(etcd)
    etcd.delete(key("pods", "b", "ns"))
    done = subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    assert kv_now(nats_server.url) == expected_kv(etcd)
    assert "pods.ns.b" not in kv_now(nats_server.url)
    assert b"swept 1 key(s)" in done.stderr
