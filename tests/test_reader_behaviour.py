"""One behaviour suite, both readers: the reflector core's promises, whatever the protocol.

Each test runs twice: the etcd reader against a real etcd, the APIServer
reader against the fake APIServer (in-process). A :class:`Side` hides how to
write objects, compact history and hold the reader's watches back, so the
tests read as the behaviour they check. Watches are held back (never sent)
until the test lets them go: that is "the reader is cut off" without sleeps.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from tattler_etcd.data import ChangeType, Entry
from tattler_etcd.errors import ConnectTimeoutError, PermanentReaderError
from tattler_etcd.readers import Backoff, Reader
from tattler_etcd.readers.apiserver import APIServerReader, FileBookmarkStore
from tattler_etcd.readers.etcd import EtcdReader
from tests.fake_apiserver import FakeCluster, in_process
from tests.support.etcd import EtcdServer
from tests.support.etcd_reading import HookTransport, obj
from tests.support.reading import Harness, run_reader


ADD, UPDATE, DELETE, SNAPSHOT = ChangeType.ADD, ChangeType.UPDATE, ChangeType.DELETE, ChangeType.SNAPSHOT
NO_JITTER = functools.partial(Backoff, initial=0.05, cap=0.2, rand=lambda: 0.0)


class Side(abc.ABC):
    """One reader and its source, driven the same way."""

    source: str

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        #: Watches wait for this before they are sent (the reader is "cut off").
        self.gate = trio.Event()
        self.gate.set()
        #: Each list request waits this long first (a slow source that keeps answering).
        self.list_delay = 0.0
        #: The list request with this number (1 is the first) fails once, as a dropped connection.
        self.fail_list = 0
        self.lists = 0
        #: When the first list request was made.
        self.started = 0.0

    async def listing(self) -> None:
        """Called by the transport hook before each list request."""
        self.lists += 1
        if self.lists == 1:
            self.started = trio.current_time()
        if self.list_delay:
            await trio.sleep(self.list_delay)
        if self.lists == self.fail_list:
            raise httpx.ConnectError("the test dropped this list request")

    def cut_off(self) -> None:
        self.gate = trio.Event()

    def reconnect(self) -> None:
        self.gate.set()

    @abc.abstractmethod
    def key(self, name: str) -> str: ...

    @abc.abstractmethod
    async def create(self, name: str, uid: str, **spec: Any) -> None: ...

    @abc.abstractmethod
    async def update(self, name: str, uid: str, **spec: Any) -> None: ...

    @abc.abstractmethod
    async def delete(self, name: str) -> None: ...

    @abc.abstractmethod
    async def compact(self) -> None: ...

    @abc.abstractmethod
    def reader(self, *, persist: bool = False, **kw: Any) -> Reader:
        """A reader of pods in namespace ``ns``; with ``persist``, it keeps its position and index on disk."""


class EtcdSide(Side):
    source = "etcd"

    def __init__(self, tmp_path: Path, etcd: EtcdServer) -> None:
        super().__init__(tmp_path)
        self.etcd = etcd

    def key(self, name: str) -> str:
        return f"/registry/pods/ns/{name}"

    async def create(self, name: str, uid: str, **spec: Any) -> None:
        await trio.to_thread.run_sync(self.etcd.put, self.key(name), obj("pods", name, "ns", uid=uid, **spec))

    async def update(self, name: str, uid: str, **spec: Any) -> None:
        await self.create(name, uid, **spec)

    async def delete(self, name: str) -> None:
        await trio.to_thread.run_sync(self.etcd.delete, self.key(name))

    async def compact(self) -> None:
        await trio.to_thread.run_sync(lambda: self.etcd.compact(self.etcd.revision()))

    def reader(self, *, persist: bool = False, **kw: Any) -> Reader:
        async def hold(request: httpx.Request) -> None:
            if request.url.path.endswith("/watch"):
                await self.gate.wait()
            elif request.url.path.endswith("/range"):
                await self.listing()

        if persist:
            kw["revision_file"] = self.tmp_path / "revisions.json"
        return EtcdReader(self.etcd.url, resources=["pods"], backoff_factory=NO_JITTER,
                          client_factory=lambda: httpx.AsyncClient(transport=HookTransport(hold)), **kw)


class APIServerSide(Side):
    source = "apiserver"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.server = in_process(FakeCluster())

    def key(self, name: str) -> str:
        return f"pods/ns/{name}"

    async def create(self, name: str, uid: str, **spec: Any) -> None:
        labels = {k: str(v) for k, v in spec.items()}
        self.server.cluster.create("pods", {"metadata": {"name": name, "namespace": "ns", "uid": uid,
                                                         "labels": labels}})

    async def update(self, name: str, uid: str, **spec: Any) -> None:
        labels = {k: str(v) for k, v in spec.items()}
        self.server.cluster.update("pods", {"metadata": {"name": name, "namespace": "ns", "uid": uid,
                                                         "labels": labels}})

    async def delete(self, name: str) -> None:
        self.server.cluster.delete("pods", name, "ns")

    async def compact(self) -> None:
        self.server.cluster.compact()

    def reader(self, *, persist: bool = False, **kw: Any) -> Reader:
        async def hold(request: httpx.Request) -> None:
            if request.url.params.get("watch") == "1":
                await self.gate.wait()
            elif request.url.path.endswith("/pods"):
                await self.listing()

        if persist:
            kw["bookmark_store"] = FileBookmarkStore(self.tmp_path / "bookmarks.json")
        return APIServerReader(["pods"], client_factory=lambda: self.server.client(before=hold), watch_list=False,
                               backoff_factory=NO_JITTER, rand=lambda: 0.0, **kw)


@pytest.fixture(params=["etcd", "apiserver"])
def side(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Side]:
    if request.param == "etcd":
        etcd = request.getfixturevalue("etcd")
        yield EtcdSide(tmp_path, etcd)
    else:
        yield APIServerSide(tmp_path)


def changes(entries: list[Entry]) -> list[tuple[str, str, str]]:
    return [(e.change.value, e.name, e.uid) for e in entries]


@pytest.fixture
async def guard() -> AsyncIterator[None]:
    with trio.fail_after(30):
        yield


async def test_initial_state_then_every_change(side: Side, guard: None) -> None:
    await side.create("a", "uid-a")
    async with run_reader(side.reader()) as h:
        assert changes(h.entries) == [("add", "a", "uid-a")]
        assert h.entries[0].key == side.key("a") and h.entries[0].source.value == side.source
        await side.create("b", "uid-b")
        await side.update("a", "uid-a", v=2)
        await side.delete("b")
        got = await h.take(3)
    assert changes(got) == [("add", "b", "uid-b"), ("update", "a", "uid-a"), ("delete", "b", "uid-b")]


async def test_the_ghost_rule(side: Side, guard: None) -> None:
    """Cut off, a key deleted and re-created (new uid), another deleted, history compacted:
    the relist deletes every uid it knew that is gone, the replaced one before its successor."""
    for name in ("keep", "again", "gone"):
        await side.create(name, f"uid-{name}")
    side.cut_off()
    async with run_reader(side.reader()) as h:
        assert {e.uid for e in h.entries} == {"uid-keep", "uid-again", "uid-gone"}
        await side.delete("again")
        await side.create("again", "uid-again-2")
        await side.delete("gone")
        await side.create("new", "uid-new")
        await side.compact()
        side.reconnect()
        await h.until(lambda h: h.uids == {"uid-keep", "uid-again-2", "uid-new"})
        relist = h.entries[h.cursor:]
    assert sorted(changes(relist)) == sorted([
        ("snapshot", "keep", "uid-keep"), ("delete", "again", "uid-again"), ("snapshot", "again", "uid-again-2"),
        ("delete", "gone", "uid-gone"), ("snapshot", "new", "uid-new")])
    order = changes(relist)
    assert order.index(("delete", "again", "uid-again")) < order.index(("snapshot", "again", "uid-again-2"))
    # A consumer keyed by name is right too: the old uid's DELETE did not remove the new one.
    assert h.by_name == {side.key("keep"): "uid-keep", side.key("again"): "uid-again-2",
                         side.key("new"): "uid-new"}
    counters = h.counters.prefixed(f"reader.{side.source}")
    assert (counters["expired"], counters["relists"], counters["deletes_on_relist"]) == (1, 1, 2)


async def test_a_restart_through_compaction_deletes_what_vanished_while_down(side: Side, guard: None) -> None:
    for name in ("stay", "go"):
        await side.create(name, f"uid-{name}")
    async with run_reader(side.reader(persist=True)) as h:
        assert len(h.entries) == 2
    # Down: one object goes, one comes, and the history goes with them.
    await side.delete("go")
    await side.create("later", "uid-later")
    await side.compact()
    async with run_reader(side.reader(persist=True)) as h:
        await h.until(lambda h: ("delete", "go", "uid-go") in changes(h.entries))
        await h.until(lambda h: "uid-later" in h.uids)
    assert sorted(changes(h.entries)) == sorted([
        ("delete", "go", "uid-go"), ("snapshot", "later", "uid-later"), ("snapshot", "stay", "uid-stay")])
    assert h.counters[f"reader.{side.source}.resumes"] == 1


async def test_status_follows_the_reader(side: Side, guard: None) -> None:
    await side.create("a", "uid-a")
    reader = side.reader()
    status = reader.status  # type: ignore[attr-defined]
    assert (status.state, status.synced) == ("listing", False)
    async with run_reader(reader) as h:
        await side.create("b", "uid-b")
        await h.take(1)
        await trio.testing.wait_all_tasks_blocked()  # the reader notes its position once the chunk is taken
        status = reader.status  # type: ignore[attr-defined]
        assert (status.state, status.synced, status.last_error, status.down_since) == ("watching", True, "", None)
        (res,) = status.resources.values()
        assert res.position == h.entries[-1].resource_version
        assert status.counters["lists"] == 1 and status.counters["entries"] == 2
    assert reader.status.state == "stopped"  # type: ignore[attr-defined]


async def test_a_long_first_list_that_keeps_answering_is_not_cut(etcd: EtcdServer, tmp_path: Path,
                                                                  guard: None) -> None:
    # connect_timeout bounds a silence, not the first list: 200,000 objects take minutes to list.
    # Here every page takes 0.3 s, the list 1.5 s or more, with a failure past 1 s (a retry
    # then): a reader that counted from its start gave up with ConnectTimeoutError. (etcd only:
    # the APIServer serves a first list from its cache in one answer, and a call that is
    # answering is never cut.)
    side = EtcdSide(tmp_path, etcd)
    for i in range(5):
        await side.create(f"p{i}", f"uid-{i}")
    side.list_delay = 0.3
    side.fail_list = 4
    async with run_reader(side.reader(connect_timeout=1.0, page_size=1)) as h:  # returns once synced
        assert sorted(e.name for e in h.entries) == ["p0", "p1", "p2", "p3", "p4"]
    assert trio.current_time() - side.started > 1.5
    assert h.counters[f"reader.{side.source}.retries"] >= 1


async def test_connect_timeout_gives_up_before_the_first_sync(side: Side, guard: None) -> None:
    if isinstance(side, EtcdSide):
        reader: Any = EtcdReader("http://127.0.0.1:1", resources=["pods"], backoff_factory=NO_JITTER,
                                 connect_timeout=0.5)
        endpoint = "http://127.0.0.1:1"
    else:
        assert isinstance(side, APIServerSide)
        side.server.cluster.fail(503, times=10_000, message="etcd is down")
        reader = side.reader(connect_timeout=0.5)
        endpoint = side.server.url
    with pytest.raises(ConnectTimeoutError) as info:
        async with run_reader(reader):
            pass
    err = info.value
    assert isinstance(err, PermanentReaderError)
    assert err.endpoint == endpoint
    assert str(err).startswith(f"{endpoint}: no answer within 0.5s before the first sync; last error: ")
    assert err.reason and err.reason in str(err)
