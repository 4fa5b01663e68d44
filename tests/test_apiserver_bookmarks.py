"""Bookmark stores: a restarted reader resumes without relisting while its version is valid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from tattler_etcd.errors import ConfigError
from tattler_etcd.readers.apiserver import (
    APIClient,
    APIServerReader,
    Backoff,
    ConfigMapBookmarkStore,
    FileBookmarkStore,
)
from tests.fake_apiserver import FakeCluster, RunningServer, in_process
from tests.fake_apiserver.objects import make_pod
from tests.support.reading import run_reader



@pytest.fixture
def server() -> RunningServer:
    return in_process(FakeCluster())


def reader(srv: RunningServer, store: Any, **kw: Any) -> APIServerReader:
    return APIServerReader(["pods"], client_factory=srv.client, bookmark_store=store, watch_list=False,
                           backoff_factory=lambda: Backoff(rand=lambda: 0.0), rand=lambda: 0.0, **kw)


async def test_file_store_round_trip(tmp_path: Path) -> None:
    store = FileBookmarkStore(tmp_path / "sub" / "rv.json")
    assert await store.load("pods") is None
    await store.save("pods", "12")
    await store.save("nodes", "7")
    assert json.loads((tmp_path / "sub" / "rv.json").read_text()) == {"nodes": "7", "pods": "12"}
    assert await FileBookmarkStore(tmp_path / "sub" / "rv.json").load("pods") == "12"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["rv.json"]  # no temporary file left


async def test_file_store_rejects_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "rv.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=rf"^bookmark file {path}: not an object of resource -> resourceVersion$"):
        await FileBookmarkStore(path).load("pods")


@pytest.mark.parametrize("kind", ["file", "configmap"])
async def test_restart_resumes_without_relisting(server: RunningServer, tmp_path: Path, kind: str,
                                                 autojump_clock: Any) -> None:
    c = server.cluster
    for i in range(3):
        c.create("pods", make_pod(i))
    client = APIClient(http=server.client())
    store: Any = (FileBookmarkStore(tmp_path / "rv.json") if kind == "file"
                  else ConfigMapBookmarkStore(client, namespace="default", name="tattler-bookmarks"))
    with trio.fail_after(600):
        async with run_reader(reader(server, store)) as h:
            assert len(h.entries) == 3
            c.create("pods", make_pod(3))
            await h.take(1)
        # stopped; meanwhile one pod changes
        c.delete("pods", "pod-00000")
        lists_before = len(c.list_requests("pods"))
        async with run_reader(reader(server, store)) as h:
            got = await h.take(1)
            assert [(e.change.value, e.key) for e in got] == [("delete", "pods/default/pod-00000")]
            assert h.counters["reader.apiserver.resumes"] == 1
        assert len(c.list_requests("pods")) == lists_before  # no relist
    await client.http.aclose()
    if kind == "configmap":
        cm = c.get("configmaps", "tattler-bookmarks")
        assert cm is not None and cm["data"]["pods"].isdigit()


async def test_a_restart_through_a_410_deletes_what_vanished_while_down(server: RunningServer, tmp_path: Path,
                                                                       autojump_clock: Any) -> None:
    """The index file beside the bookmark file: the relist after the 410 knows what it had delivered."""
    c = server.cluster
    for i in range(3):
        c.create("pods", make_pod(i))
    store = FileBookmarkStore(tmp_path / "rv.json")
    with trio.fail_after(600):
        async with run_reader(reader(server, store)) as h:
            assert len(h.entries) == 3
        assert (tmp_path / "rv.json.index").exists()
        gone = c.get("pods", "pod-00000")
        assert gone is not None
        c.delete("pods", "pod-00000")  # while tattler-etcd is down, and the history goes
        c.create("pods", make_pod(3))
        c.compact()
        async with run_reader(reader(server, store)) as h:
            await h.until(lambda h: len(h.entries) == 4)
            got = h.entries
    assert sorted((e.change.value, e.key) for e in got) == [
        ("delete", "pods/default/pod-00000"), ("snapshot", "pods/default/pod-00001"),
        ("snapshot", "pods/default/pod-00002"), ("snapshot", "pods/default/pod-00003")]
    (deleted,) = [e for e in got if e.change.value == "delete"]
    assert (deleted.uid, deleted.kind, deleted.api_version) == (gone["metadata"]["uid"], "Pod", "v1")
    assert h.counters["reader.apiserver.deletes_on_relist"] == 1


async def test_stale_stored_version_relists(server: RunningServer, tmp_path: Path, autojump_clock: Any) -> None:
    c = server.cluster
    c.create("pods", make_pod(1))
    store = FileBookmarkStore(tmp_path / "rv.json")
    await store.save("pods", "5")  # long compacted
    c.create("pods", make_pod(2))
    c.compact()
    with trio.fail_after(600):
        async with run_reader(reader(server, store)) as h:
            await h.until(lambda h: len(h.entries) == 2)
            got = h.entries
            assert sorted((e.change.value, e.key) for e in got) == [
                ("snapshot", "pods/default/pod-00001"), ("snapshot", "pods/default/pod-00002")]
            assert h.counters["reader.apiserver.expired"] == 1
    assert int(json.loads((tmp_path / "rv.json").read_text())["pods"]) == c.rv


async def test_configmap_store_rereads_once_on_a_conflict(server: RunningServer) -> None:
    c = server.cluster
    c.create("configmaps", {"metadata": {"name": "marks"}, "data": {"nodes": "3"}})
    puts = 0

    async def meddle(request: Any) -> None:
        nonlocal puts
        if request.method == "PUT":
            puts += 1
            if puts == 1:  # somebody else writes between our read and our write
                cm = c.get("configmaps", "marks")
                assert cm is not None
                c.update("configmaps", {**cm, "data": {**cm["data"], "pods": "1"}})

    http = server.client()
    http.event_hooks["request"] = [meddle]
    store = ConfigMapBookmarkStore(APIClient(http=http), namespace="default", name="marks")
    with trio.fail_after(30):
        await store.save("pods", "99")
    await http.aclose()
    assert puts == 2
    cm = c.get("configmaps", "marks")
    assert cm is not None and cm["data"] == {"nodes": "3", "pods": "99"}
