"""EtcdReader against a real etcd: list, watch, compaction, restarts, bad data.

Each test bounds itself with ``trio.fail_after`` (real I/O, wall time) and
waits on conditions (what a consumer has seen), never on sleeps.
"""

from __future__ import annotations

import base64
import functools
import logging
import threading
import time

import httpx
import pytest
import trio

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.readers import Backoff
from tattler_etcd.readers.etcd import EtcdReader
from tattler_etcd.stats import Counters
from tests.support.etcd import EtcdServer
from tests.support.etcd_reading import HookTransport, Tracker, etcd_state, key, obj

pytestmark = pytest.mark.etcd

ADD, UPDATE, DELETE, SNAPSHOT = ChangeType.ADD, ChangeType.UPDATE, ChangeType.DELETE, ChangeType.SNAPSHOT
SEGMENTS = ["pods", "minions", "namespaces", "persistentvolumes"]
PREFIXES = [f"/registry/{s}/" for s in SEGMENTS]


def seed_cluster(etcd: EtcdServer) -> int:
    items = [
        (key("pods", "web-1", "default"), obj("pods", "web-1", "default")),
        (key("pods", "web-2", "prod"), obj("pods", "web-2", "prod")),
        (key("minions", "node-a"), obj("minions", "node-a")),
        (key("namespaces", "default"), obj("namespaces", "default")),
        (key("persistentvolumes", "pv-1"), obj("persistentvolumes", "pv-1")),
        # Not read: other resources, and a prefix that only looks alike.
        ("/registry/secrets/default/token", b'{"kind":"Secret"}'),
        ("/registry/podtemplates/default/t", b'{"kind":"PodTemplate"}'),
    ]
    return etcd.put_many(items)


async def test_initial_list_is_add_at_mod_revision_then_started(etcd: EtcdServer) -> None:
    seed_cluster(etcd)
    etcd.put(key("pods", "web-1", "default"), obj("pods", "web-1", "default", uid="u-web-1"))
    tracker = Tracker()
    reader = EtcdReader(etcd.url, once=True, page_size=2)
    send, recv = trio.open_memory_channel[list[Entry]](0)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracker.consume, recv)
            await nursery.start(reader.run, send, Counters())
            # started() came after the list: everything is already handed on.
            assert tracker.state == etcd_state(etcd, PREFIXES)
    assert tracker.closed
    assert {e.change for e in tracker.entries} == {ADD}
    assert {e.source for e in tracker.entries} == {SourceType.ETCD}
    web1 = next(e for e in tracker.entries if e.name == "web-1")
    assert (web1.namespace, web1.kind, web1.api_version, web1.uid) == ("default", "Pod", "v1", "u-web-1")
    assert web1.raw["metadata"]["resourceVersion"] == web1.resource_version
    node = next(e for e in tracker.entries if e.kind == "Node")
    assert (node.key, node.namespace) == ("/registry/minions/node-a", None)


async def test_list_is_one_snapshot_while_writes_land_between_pages(etcd: EtcdServer) -> None:
    items = [(key("pods", f"p{i:03d}", "ns"), obj("pods", f"p{i:03d}", "ns")) for i in range(40)]
    etcd.put_many(items)
    ranges = 0

    async def write_between_pages(request: httpx.Request) -> None:
        nonlocal ranges
        if request.url.path.endswith("/kv/range") and b'"limit"' in request.content:
            ranges += 1
            if ranges > 1:  # after the first page: change what is still to come, and what is past
                i = ranges
                await trio.to_thread.run_sync(etcd.put, key("pods", f"p{39 - i:03d}", "ns"),
                                              obj("pods", f"p{39 - i:03d}", "ns", changed=True))
                await trio.to_thread.run_sync(etcd.delete, key("pods", f"p{i:03d}", "ns"))
                await trio.to_thread.run_sync(etcd.put, key("pods", f"new{i:03d}", "ns"),
                                              obj("pods", f"new{i:03d}", "ns"))

    transport = HookTransport(write_between_pages)
    async with httpx.AsyncClient(transport=transport) as client:
        reader = EtcdReader(etcd.url, resources=["pods"], page_size=5, client=client)
        tracker = Tracker()
        send, recv = trio.open_memory_channel[list[Entry]](0)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(tracker.consume, recv)
                await nursery.start(reader.run, send, Counters())
                listed = dict(tracker.state)
                assert ranges >= 8, "writes landed between pages"
                # The list equals etcd's state at the first page's revision, not a mix.
                at_start = await trio.to_thread.run_sync(lambda: etcd.call("/v3/kv/range", {
                    "key": base64.b64encode(b"/registry/pods/").decode(),
                    "range_end": base64.b64encode(b"/registry/pods0").decode(),
                    "revision": _first_revision(transport)}))
                assert listed == {base64.b64decode(kv["key"]).decode(): kv["mod_revision"]
                                  for kv in at_start["kvs"]}
                assert len(listed) == 40
                assert listed != etcd_state(etcd, ["/registry/pods/"]), "etcd moved on during the list"
                # Then the watch brings every write made meanwhile.
                await tracker.wait_for(lambda: tracker.state == etcd_state(etcd, ["/registry/pods/"]))
                nursery.cancel_scope.cancel()
    assert [c for _, c, _ in tracker.seen[:40]] == [ADD] * 40


def _first_revision(transport: HookTransport) -> int:
    import json as _json

    for req in transport.requests:
        if req.url.path.endswith("/kv/range") and b'"revision"' in req.content:
            return int(_json.loads(req.content)["revision"])
    raise AssertionError("no pinned range request")


async def test_watch_maps_put_update_delete(etcd: EtcdServer) -> None:
    seed_cluster(etcd)
    tracker = Tracker()
    reader = EtcdReader(etcd.url, resources=["pods", "nodes"])
    send, recv = trio.open_memory_channel[list[Entry]](0)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracker.consume, recv)
            await nursery.start(reader.run, send, Counters())
            n = len(tracker.entries)
            k = key("pods", "api", "default")
            r_add = await trio.to_thread.run_sync(etcd.put, k, obj("pods", "api", "default", uid="u-api"))
            r_upd = await trio.to_thread.run_sync(etcd.put, k, obj("pods", "api", "default", uid="u-api", v=2))
            r_del = await trio.to_thread.run_sync(etcd.delete, k)
            r_node = await trio.to_thread.run_sync(etcd.delete, key("minions", "node-a"))
            await tracker.wait_for(lambda: len(tracker.entries) >= n + 4)
            nursery.cancel_scope.cancel()
    got = [(e.key, e.change, e.resource_version, e.uid) for e in tracker.entries[n:]]
    pods = [g for g in got if g[0] == k]
    assert pods == [(k, ADD, str(r_add), "u-api"), (k, UPDATE, str(r_upd), "u-api"), (k, DELETE, str(r_del), "u-api")]
    node_delete = next(e for e in tracker.entries[n:] if e.kind == "Node")
    assert (node_delete.change, node_delete.resource_version) == (DELETE, str(r_node))
    # A DELETE carries the object as it was (prev_kv), with the delete's revision.
    last = next(e for e in tracker.entries[n:] if e.key == k and e.change is DELETE)
    assert last.raw["spec"] == {"v": 2}
    assert last.raw["metadata"]["resourceVersion"] == str(r_del)


async def test_bad_keys_and_values_are_counted_logged_and_skipped(
    etcd: EtcdServer, caplog: pytest.LogCaptureFixture,
) -> None:
    good = key("pods", "ok", "default")
    etcd.put_many([
        (good, obj("pods", "ok", "default")),
        ("/registry/pods/no-namespace", obj("pods", "x")),
        ("/registry/pods/a/b/c", obj("pods", "c", "a")),
        ("/registry/pods/default/not-json", b"{secret-looking body that is not JSON"),
        ("/registry/pods/default/no-uid", b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"no-uid"}}'),
        ("/registry/pods/default/garbage", b"\x00\x01binary that is not k8s"),
        ("/registry/minions/ns/node", obj("minions", "node")),
    ])
    caplog.set_level(logging.WARNING, logger="tattler_etcd")
    tracker, counters = Tracker(), Counters()
    reader = EtcdReader(etcd.url, resources=["pods", "nodes"])
    send, recv = trio.open_memory_channel[list[Entry]](0)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracker.consume, recv)
            await nursery.start(reader.run, send, counters)
            assert list(tracker.state) == [good]
            # The same through the watch: skipped, counted, and the reader goes on.
            await trio.to_thread.run_sync(etcd.put, "/registry/pods/default/not-json-2", b"{nope")
            await trio.to_thread.run_sync(etcd.put, "/registry/pods/x//y", obj("pods", "y", "x"))
            after = key("pods", "after", "default")
            await trio.to_thread.run_sync(etcd.put, after, obj("pods", "after", "default"))
            await tracker.wait_for(lambda: after in tracker.state)
            nursery.cancel_scope.cancel()
    assert set(tracker.state) == {good, after}
    assert counters["reader.etcd.bad_keys"] == 4
    assert counters["reader.etcd.decode_errors"] == 4
    text = caplog.text
    for k in ("/registry/pods/no-namespace", "/registry/pods/a/b/c", "/registry/pods/default/not-json",
              "/registry/pods/default/no-uid", "/registry/minions/ns/node", "/registry/pods/x//y",
              "/registry/pods/default/garbage", "/registry/pods/default/not-json-2"):
        assert k in text
    assert "secret-looking" not in text


async def test_compaction_relists_with_snapshot_and_deletes_the_vanished(etcd: EtcdServer) -> None:
    keep, gone, changed = (key("pods", n, "ns") for n in ("keep", "gone", "changed"))
    etcd.put_many([(keep, obj("pods", "keep", "ns", uid="u-keep")), (gone, obj("pods", "gone", "ns", uid="u-gone")),
                   (changed, obj("pods", "changed", "ns", uid="u-changed"))])
    watch_gate = trio.Event()

    async def hold_watches(request: httpx.Request) -> None:
        if request.url.path.endswith("/watch"):
            await watch_gate.wait()

    tracker, counters = Tracker(), Counters()
    async with httpx.AsyncClient(transport=HookTransport(hold_watches)) as client:
        reader = EtcdReader(etcd.url, resources=["pods"], client=client)
        send, recv = trio.open_memory_channel[list[Entry]](0)
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(tracker.consume, recv)
                await nursery.start(reader.run, send, counters)
                n = len(tracker.entries)
                # While the watch is held back: history moves on and is compacted.
                await trio.to_thread.run_sync(etcd.delete, gone)
                await trio.to_thread.run_sync(etcd.put, changed, obj("pods", "changed", "ns", uid="u-changed", v=2))
                new = key("pods", "new", "ns")
                await trio.to_thread.run_sync(etcd.put, new, obj("pods", "new", "ns"))
                rev = await trio.to_thread.run_sync(etcd.revision)
                await trio.to_thread.run_sync(etcd.compact, rev)
                watch_gate.set()
                await tracker.wait_for(lambda: tracker.state == etcd_state(etcd, ["/registry/pods/"]))
                # And the watch goes on after the relist.
                later = await trio.to_thread.run_sync(etcd.put, keep, obj("pods", "keep", "ns", uid="u-keep", v=3))
                await tracker.wait_for(lambda: tracker.state.get(keep) == str(later))
                nursery.cancel_scope.cancel()
    relist = tracker.entries[n:-1]
    assert counters["reader.etcd.expired"] == 1
    assert sorted((e.key, e.change.value) for e in relist) == sorted(
        [(keep, "snapshot"), (changed, "snapshot"), (new, "snapshot"), (gone, "delete")])
    deleted = next(e for e in relist if e.change is DELETE)
    assert (deleted.uid, deleted.kind, deleted.name, deleted.namespace) == ("u-gone", "Pod", "gone", "ns")
    assert deleted.resource_version == str(rev)
    assert tracker.entries[-1].change is UPDATE


async def test_etcd_killed_and_restarted_mid_watch_loses_and_repeats_nothing(etcd: EtcdServer) -> None:
    seed_cluster(etcd)
    written: dict[str, list[int]] = {}
    tracker = Tracker()
    reader = EtcdReader(etcd.url, resources=["pods", "nodes"], backoff_factory=functools.partial(Backoff, initial=0.05, cap=0.3))
    send, recv = trio.open_memory_channel[list[Entry]](0)

    def writer(round_: int, n: int) -> None:
        """Puts and deletes; a request cut by the kill has an unknown outcome and is not asserted."""
        for i in range(n):
            k = key("pods", f"p{i % 7}", "ns") if i % 3 else key("minions", f"n{i % 4}")
            try:
                if i % 5 == 4:
                    reply = etcd.call("/v3/kv/deleterange", {"key": base64.b64encode(k.encode()).decode()})
                    if not int(reply.get("deleted", 0)):
                        continue  # nothing to delete: no new revision
                    rev = int(reply["header"]["revision"])
                else:
                    rev = etcd.put(k, obj("pods" if "pods" in k else "minions", k.rsplit("/", 1)[1], "ns"
                                          if "pods" in k else None, r=round_, i=i))
            except OSError:
                continue
            written.setdefault(k, []).append(rev)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracker.consume, recv)
            await nursery.start(reader.run, send, Counters())
            for round_ in range(3):
                # Writes land while etcd is killed under them.
                async with trio.open_nursery() as writes:
                    writes.start_soon(trio.to_thread.run_sync, writer, round_, 60)
                    await trio.to_thread.run_sync(etcd.kill)
                await trio.to_thread.run_sync(etcd.start)
                await trio.to_thread.run_sync(writer, round_ + 10, 20)
            want = etcd_state(etcd, ["/registry/pods/", "/registry/minions/"])
            await tracker.wait_for(lambda: tracker.state == want)
            nursery.cancel_scope.cancel()
    # Key by key with resource versions; every write whose reply we had was seen, once.
    assert tracker.state == want
    pairs = [(k, rv) for k, _, rv in tracker.seen]
    assert len(pairs) == len(set(pairs)), "an event was delivered twice"
    seen = set(pairs)
    for k, revs in written.items():
        for rev in revs:
            assert (k, str(rev)) in seen, f"lost {k}@{rev}"


async def test_cancellation_is_prompt_and_leaves_no_thread(etcd: EtcdServer) -> None:
    seed_cluster(etcd)
    threads = threading.active_count()
    reader = EtcdReader(etcd.url)
    send, recv = trio.open_memory_channel[list[Entry]](100)
    async with trio.open_nursery() as nursery:
        await nursery.start(reader.run, send, Counters())
        t0 = time.monotonic()
        nursery.cancel_scope.cancel()
    assert time.monotonic() - t0 < 1.0
    assert threading.active_count() == threads
    # The reader closed its end.
    with pytest.raises(trio.EndOfChannel):
        while True:
            recv.receive_nowait()


async def test_finite_mode_ends_with_the_streams(etcd: EtcdServer) -> None:
    seed_cluster(etcd)
    tracker = Tracker()
    # The watch history is fixed (start revision, then bounded by Grpc-Timeout), as in a recording.
    reader = EtcdReader(etcd.url, resources=["pods", "nodes", "namespaces"], follow=False,
                        watch_timeout=1.0)
    writes = [
        (key("minions", "n2"), obj("minions", "n2")),
        (key("pods", "a", "ns"), obj("pods", "a", "ns")),
        (key("namespaces", "ns"), obj("namespaces", "ns")),
        (key("pods", "b", "ns"), obj("pods", "b", "ns")),
        (key("minions", "n3"), obj("minions", "n3")),
    ]
    send, recv = trio.open_memory_channel[list[Entry]](0)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracker.consume, recv)
            await nursery.start(reader.run, send, Counters())
            n = len(tracker.entries)
            for k, v in writes:
                await trio.to_thread.run_sync(etcd.put, k, v)
        # The reader returned by itself and closed its channel.
    assert tracker.closed
    watched = tracker.entries[n:]
    # Handed on as they arrive (no merge at the end): each resource in its stream's order.
    assert sorted(e.key for e in watched) == sorted(k for k, _ in writes)
    for segment in ("minions", "pods", "namespaces"):
        mine = [e for e in watched if f"/{segment}/" in e.key]
        assert [e.key for e in mine] == [k for k, _ in writes if f"/{segment}/" in k]
        assert [int(e.resource_version) for e in mine] == sorted(int(e.resource_version) for e in mine)
