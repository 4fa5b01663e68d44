"""End to end: a real etcd, the real EtcdReader, the Runner, NatsProcessor and a real nats-server.

The KV bucket must end equal to etcd's objects, key by key, through updates,
deletes, a nats-server killed with -9 in the middle of the writes and
restarted on the same store, and a second replica publishing the same changes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import trio

from tattler_etcd.data import Entry
from tattler_etcd.delivery.nats import NatsProcessor, open_nats_processor
from tattler_etcd.delivery.subjects import escape_token
from tattler_etcd.pipeline import Runner
from tattler_etcd.readers.etcd import EtcdReader
from tests.support.etcd import EtcdServer
from tests.support.etcd_reading import key, obj
from tests.support.nats import NatsServer, kv_state, stream_messages

pytestmark = [pytest.mark.etcd, pytest.mark.nats]


class Delivered:
    """Wraps a processor; lets a test wait until an entry at or past a revision was delivered."""

    def __init__(self, proc: NatsProcessor) -> None:
        self.proc = proc
        self.max_rv = 0
        self._changed = trio.Condition()

    async def __call__(self, batch: Iterable[Entry]) -> None:
        await self.proc(batch)
        self.max_rv = max([self.max_rv, *(int(e.resource_version) for e in batch)])
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, revision: int) -> None:
        async with self._changed:
            while self.max_rv < revision:
                await self._changed.wait()


def seed(etcd: EtcdServer, n: int) -> int:
    items = [(key("pods", f"p{i}.x", f"ns{i % 3}"), obj("pods", f"p{i}.x", f"ns{i % 3}")) for i in range(n)]
    return etcd.put_many(items)


def write_changes(etcd: EtcdServer, n: int, at: dict[int, Callable[[], None]]) -> None:
    """``n`` etcd writes (updates, deletes, new objects) one by one, calling ``at[i]`` before write ``i``."""
    for i in range(n):
        if i in at:
            at[i]()
        j = i % 40
        if i % 7 == 3:
            etcd.delete(key("pods", f"p{j}.x", f"ns{j % 3}"))
        elif i % 5 == 0:
            etcd.put(key("pods", f"new{i}", "ns1"), obj("pods", f"new{i}", "ns1"))
        else:
            k = key("pods", f"p{j}.x", f"ns{j % 3}")
            etcd.put(k, obj("pods", f"p{j}.x", f"ns{j % 3}", uid=_uid(etcd, k), step=i))


def _uid(etcd: EtcdServer, k: str) -> str | None:
    kv = etcd.get(k)
    if kv is None:
        return None
    import base64

    return str(json.loads(base64.b64decode(kv["value"]))["metadata"]["uid"])


def expected_kv(etcd: EtcdServer) -> dict[str, tuple[str, str]]:
    """KV key -> (uid, resourceVersion) for every pod etcd holds now."""
    out = {}
    for kv in etcd.range_prefix("/registry/pods/"):
        _, _, _, ns, name = kv["key"].split("/")
        out[f"pods.{escape_token(ns)}.{escape_token(name)}"] = (
            json.loads(kv["value"])["metadata"]["uid"], str(kv["mod_revision"]))
    return out


def actual_kv(state: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    for k, v in state.items():
        assert v["object"]["metadata"]["resourceVersion"] == v["resourceVersion"], k
    return {k: (v["uid"], v["resourceVersion"]) for k, v in state.items()}


async def run_replica(etcd: EtcdServer, nats_url: str, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    async with open_nats_processor(nats_url) as proc:
        delivered = Delivered(proc)
        runner = Runner(batch_window=0.05, batch_size=200)
        runner.add_reader(EtcdReader(etcd.url, resources=["pods"]))
        runner.add_processor("nats", delivered)
        async with trio.open_nursery() as n:
            await n.start(runner.run)
            task_status.started((runner, delivered))


async def test_kv_equals_etcd_through_a_nats_server_kill(etcd: EtcdServer, nats_server: NatsServer) -> None:
    seeded = seed(etcd, 60)
    with trio.fail_after(90):
        async with trio.open_nursery() as n:
            runner, delivered = await n.start(run_replica, etcd, nats_server.url)
            await delivered.wait_for(seeded)
            killed = threading.Event()
            await trio.to_thread.run_sync(write_changes, etcd, 300, {
                100: lambda: (nats_server.kill(), killed.set()), 200: nats_server.start})
            last = etcd.put(key("pods", "sentinel", "ns0"), obj("pods", "sentinel", "ns0"))
            await delivered.wait_for(last)
            runner.stop()
    assert killed.is_set()
    assert actual_kv(await kv_state(nats_server.url)) == expected_kv(etcd)


async def test_two_replicas_store_each_change_once(etcd: EtcdServer, nats_server: NatsServer) -> None:
    seeded = seed(etcd, 30)
    with trio.fail_after(90):
        async with trio.open_nursery() as n:
            one, d1 = await n.start(run_replica, etcd, nats_server.url)
            two, d2 = await n.start(run_replica, etcd, nats_server.url)
            await d1.wait_for(seeded)
            await d2.wait_for(seeded)
            await trio.to_thread.run_sync(write_changes, etcd, 60, {})
            last = etcd.put(key("pods", "sentinel", "ns0"), obj("pods", "sentinel", "ns0"))
            await d1.wait_for(last)
            await d2.wait_for(last)
            one.stop()
            two.stop()
    msgs = await stream_messages(nats_server.url)
    ids = [m[1]["Nats-Msg-Id"] for m in msgs]
    assert len(ids) == len(set(ids))
    assert d1.proc.published + d2.proc.published == 2 * len(ids)
    assert d1.proc.duplicates + d2.proc.duplicates == len(ids)
    assert actual_kv(await kv_state(nats_server.url)) == expected_kv(etcd)


def _kv_now(url: str) -> dict[str, tuple[str, str]] | None:
    """The bucket as (uid, resourceVersion) by key; None while it is not there yet (the CLI makes it)."""
    try:
        return actual_kv(trio.run(kv_state, url))
    except Exception as exc:  # nats-py's BucketNotFoundError, wrapped by trio-asyncio's nursery
        if "BucketNotFoundError" not in repr(exc):
            raise
        return None


def _wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll real processes (the CLI, nats-server) until ``check()`` holds; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.2)


@pytest.mark.slow
def test_the_cli_keeps_the_kv_bucket_equal_to_etcd(etcd: EtcdServer, nats_server: NatsServer,
                                                    tmp_path: Path) -> None:
    """``tattler-etcd run --etcd-endpoints URL --to nats://...`` twice, side by side, through a kill -9."""
    seed(etcd, 40)
    cmd = [sys.executable, "-m", "tattler_etcd", "run", "--etcd-endpoints", etcd.url, "--resources", "pods",
           "--batch-window", "0.1", "-v", "--to", nats_server.url]
    logs = [open(tmp_path / f"replica{i}.log", "wb") for i in (1, 2)]  # noqa: SIM115 - closed below
    replicas = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log) for log in logs]
    try:
        _wait_until(lambda: _kv_now(nats_server.url) == expected_kv(etcd), 60, "the seeded state in KV")
        write_changes(etcd, 150, {60: nats_server.kill, 90: nats_server.start})
        _wait_until(lambda: _kv_now(nats_server.url) == expected_kv(etcd), 60, "KV equal to etcd")
        for p in replicas:
            p.send_signal(signal.SIGTERM)
        assert [p.wait(30) for p in replicas] == [0, 0]
    finally:
        for p in replicas:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
    after = _kv_now(nats_server.url)
    if after != expected_kv(etcd):  # and still, once both have stopped
        for i in (1, 2):
            print(f"--- replica {i}:\n" + (tmp_path / f"replica{i}.log").read_text()[-6000:])
    assert after == expected_kv(etcd)
    msgs = trio.run(stream_messages, nats_server.url)
    ids = [m[1]["Nats-Msg-Id"] for m in msgs]
    assert len(ids) == len(set(ids))  # each change once, from two replicas and their resends
    consumed = subprocess.run([sys.executable, "-m", "tattler_etcd", "consume", nats_server.url, "--once"],
                              capture_output=True, check=True, timeout=60).stdout.decode().splitlines()
    state = {f"pods.{escape_token(d['namespace'])}.{escape_token(d['name'])}": (d["uid"], d["resourceVersion"])
             for d in map(json.loads, consumed)}
    assert state == expected_kv(etcd)
