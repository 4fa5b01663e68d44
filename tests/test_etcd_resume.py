"""Resume after a restart of tattler-etcd, from the revision file; relist when history is gone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from tattler_etcd.data import ChangeType, Entry
from tattler_etcd.errors import ConfigError
from tattler_etcd.readers.etcd import EtcdReader, RevisionStore
from tattler_etcd.stats import Counters
from tests.support.etcd import EtcdServer
from tests.support.etcd_reading import Tracker, etcd_state, key, obj
from tests.support.reading import run_reader

pytestmark = pytest.mark.etcd

ADD, UPDATE, DELETE, SNAPSHOT = ChangeType.ADD, ChangeType.UPDATE, ChangeType.DELETE, ChangeType.SNAPSHOT
A, B, C = (key("pods", n, "ns") for n in "abc")
NODE = key("minions", "n1")


async def first_run(etcd: EtcdServer, path: Path) -> Tracker:
    """List, see one watched write, stop (cancelled, as on SIGTERM)."""
    tracker = Tracker()
    reader = EtcdReader(etcd.url, resources=["pods", "nodes"], revision_file=path)
    send, recv = trio.open_memory_channel[list[Entry]](0)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracker.consume, recv)
            await nursery.start(reader.run, send, Counters())
            rev = await trio.to_thread.run_sync(etcd.put, B, obj("pods", "b", "ns", v=2))
            await tracker.wait_for(lambda: tracker.state.get(B) == str(rev))
            nursery.cancel_scope.cancel()
    return tracker


async def second_run(etcd: EtcdServer, path: Path, until: list[str]) -> tuple[Tracker, Counters]:
    tracker, counters = Tracker(), Counters()
    reader = EtcdReader(etcd.url, resources=["pods", "nodes"], revision_file=path)
    send, recv = trio.open_memory_channel[list[Entry]](0)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracker.consume, recv)
            await nursery.start(reader.run, send, counters)
            await tracker.wait_for(lambda: all(k in {s[0] for s in tracker.seen} for k in until))
            nursery.cancel_scope.cancel()
    return tracker, counters


async def test_resume_continues_where_it_stopped(etcd: EtcdServer, tmp_path: Path) -> None:
    etcd.put_many([(A, obj("pods", "a", "ns")), (B, obj("pods", "b", "ns")), (NODE, obj("minions", "n1"))])
    path = tmp_path / "revisions.json"
    await first_run(etcd, path)
    stored = json.loads(path.read_text())
    assert stored["prefix"] == "/registry" and set(stored["revisions"]) == {"pods", "minions"}
    # While tattler-etcd is down:
    r_del = etcd.delete(A)
    r_add = etcd.put(C, obj("pods", "c", "ns"))
    tracker, counters = await second_run(etcd, path, [A, C])
    # No relist: only what happened meanwhile, each once.
    assert [(k, c, rv) for k, c, rv in tracker.seen] == [(A, DELETE, str(r_del)), (C, ADD, str(r_add))]
    assert counters["reader.etcd.resumes"] == 2 and counters["reader.etcd.lists"] == 0  # pods and nodes


async def test_a_restart_through_compaction_deletes_what_vanished_while_down(etcd: EtcdServer,
                                                                            tmp_path: Path) -> None:
    """The index is kept beside the revision file, so the relist knows what it had delivered."""
    etcd.put_many([(A, obj("pods", "a", "ns", uid="uid-a")), (B, obj("pods", "b", "ns")),
                   (NODE, obj("minions", "n1"))])
    path = tmp_path / "revisions.json"
    await first_run(etcd, path)
    assert (tmp_path / "revisions.json.index").exists()
    # While tattler-etcd is down: a goes, c comes, and the history is compacted.
    etcd.delete(A)
    etcd.put(C, obj("pods", "c", "ns"))
    etcd.compact(etcd.revision())
    tracker, counters = await second_run(etcd, path, [A, B, C, NODE])
    assert counters["reader.etcd.expired"] == 2  # each resource's watch found its history gone
    assert {(k, c) for k, c, _ in tracker.seen} == {(A, DELETE), (B, SNAPSHOT), (C, SNAPSHOT), (NODE, SNAPSHOT)}
    (gone,) = [e for e in tracker.entries if e.change is DELETE]
    assert (gone.uid, gone.kind, gone.namespace, gone.name) == ("uid-a", "Pod", "ns", "a")
    assert counters["reader.etcd.deletes_on_relist"] == 1
    assert tracker.state == etcd_state(etcd, ["/registry/pods/", "/registry/minions/"])


async def test_without_the_index_a_restart_through_compaction_cannot_delete(etcd: EtcdServer,
                                                                             tmp_path: Path) -> None:
    """The index file is an aid: gone (or over its bound), the resume still works, without those DELETEs."""
    etcd.put_many([(A, obj("pods", "a", "ns")), (B, obj("pods", "b", "ns")), (NODE, obj("minions", "n1"))])
    path = tmp_path / "revisions.json"
    await first_run(etcd, path)
    (tmp_path / "revisions.json.index").unlink()
    etcd.delete(A)
    etcd.put(C, obj("pods", "c", "ns"))
    etcd.compact(etcd.revision())
    tracker, counters = await second_run(etcd, path, [B, C, NODE])
    assert {(k, c) for k, c, _ in tracker.seen} == {(B, SNAPSHOT), (C, SNAPSHOT), (NODE, SNAPSHOT)}
    assert counters["reader.etcd.resumes"] == 2


async def test_a_revision_file_ahead_of_etcd_means_a_full_list(etcd: EtcdServer, tmp_path: Path) -> None:
    etcd.put(A, obj("pods", "a", "ns"))
    path = tmp_path / "revisions.json"
    path.write_text(json.dumps({"format": 1, "prefix": "/registry", "revisions": {"pods": 10_000}}))
    async with run_reader(EtcdReader(etcd.url, resources=["pods"], revision_file=path, once=True),
                          started=False) as h:
        await h.drain()
    assert h.seen == [(A, ADD, str(etcd.revision()))]
    assert h.counters["reader.etcd.lists"] == 1
    assert json.loads(path.read_text())["revisions"] == {"pods": etcd.revision()}


def test_revision_file_for_other_resources_or_prefix_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "revisions.json"
    path.write_text(json.dumps({"format": 1, "prefix": "/registry", "revisions": {"pods": 7}}))
    assert RevisionStore(path, prefix="/registry").load(["pods", "minions"]) is None
    assert RevisionStore(path, prefix="/other").load(["pods"]) is None
    assert RevisionStore(path, prefix="/registry").load(["pods"]) == {"pods": 7}
    assert RevisionStore(tmp_path / "missing.json", prefix="/registry").load(["pods"]) is None


def test_a_file_that_is_not_a_revision_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "revisions.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=rf"^--revision-file {path}: not a tattler-etcd revision file$"):
        RevisionStore(path, prefix="/registry").load(["pods"])


def test_store_writes_atomically_and_only_forward(tmp_path: Path) -> None:
    path = tmp_path / "revisions.json"
    store = RevisionStore(path, prefix="/registry", interval=3600)
    store.note("pods", 5)
    store.flush()
    store.note("pods", 9)
    store.flush()  # within the interval: not yet
    assert json.loads(path.read_text())["revisions"] == {"pods": 5}
    store.note("pods", 3)  # never backwards
    store.flush(force=True)
    assert json.loads(path.read_text())["revisions"] == {"pods": 9}
    assert [p.name for p in tmp_path.iterdir()] == ["revisions.json"]
