"""The APIServer reader against the fake APIServer, in-process behind an httpx transport.

No socket: the reader and the fake share one trio run (``FakeTransport``).
A few tests (marked ``socket``) keep real HTTP on 127.0.0.1 for the framing.
Determinism: time is trio's virtual clock (``autojump_clock``) wherever the
reader waits (backoff, Retry-After, relist intervals); ordering comes from
what the reader has handed on, never from sleeps. Every I/O test has a
``fail_after`` guard on the virtual clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from tattler_etcd.data import ChangeType, SourceType
from tattler_etcd.errors import AccessDeniedError, ConfigError, PermanentReaderError
from tattler_etcd.readers import Reader
from tattler_etcd.readers.apiserver import APIServerReader, Backoff, ClusterConfig, ResourceRef
from tests.fake_apiserver import IN_PROCESS_URL, FakeCluster, RunningServer, in_process, open_fake_apiserver
from tests.support.reading import run_reader
from tests.fake_apiserver.objects import fixture_object, make_pod, make_widget

GUARD = 600  # virtual seconds

FORMATS = ["json", "protobuf"]


@pytest.fixture
def server() -> RunningServer:
    return in_process(FakeCluster())


@pytest.fixture
async def socket_server() -> AsyncIterator[RunningServer]:
    async with open_fake_apiserver(FakeCluster()) as srv:
        yield srv


def reader_for(srv: RunningServer, resources: list[Any] | None = None, **kw: Any) -> APIServerReader:
    kw.setdefault("backoff_factory", lambda: Backoff(rand=lambda: 0.0))
    kw.setdefault("rand", lambda: 0.0)
    if srv.url == IN_PROCESS_URL:
        return APIServerReader(resources or ["pods"], client_factory=srv.client, **kw)
    return APIServerReader(resources or ["pods"], config=ClusterConfig(srv.url), **kw)


def keys(entries: list[Any]) -> list[tuple[str, str]]:
    return [(e.change.value, e.key) for e in entries]


def test_reader_satisfies_the_protocol() -> None:
    reader = APIServerReader(["pods"], config=ClusterConfig("http://127.0.0.1:1"))
    assert isinstance(reader, Reader)
    assert reader.name == "apiserver"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("watch_list", [False, True])
async def test_initial_state_then_watch(server: RunningServer, fmt: str, watch_list: bool, autojump_clock: Any) -> None:
    c = server.cluster
    for i in range(7):
        c.create("pods", make_pod(i))
    reader = reader_for(server, content_type=fmt, page_size=3, watch_list=watch_list)
    with trio.fail_after(GUARD):
        async with run_reader(reader) as h:
            assert keys(h.entries) == [("add", f"pods/default/pod-{i:05d}") for i in range(7)]
            assert all(e.source is SourceType.APISERVER for e in h.entries)
            if watch_list:
                assert c.list_requests("pods") == []
                assert c.watch_requests("pods")[0]["sendInitialEvents"] == "true"
            else:
                # The first list asks for any version ("0"), which the
                # APIServer serves from its cache, ignoring the limit.
                assert [len(ch) for ch in h.chunks] == [7]
                assert c.list_requests("pods") == [{"limit": "3", "resourceVersion": "0"}]
            # protobuf items travel undecoded; JSON ones as the dict
            first = h.entries[0]
            assert (first.value is not None) == (fmt == "protobuf")
            assert first.raw["metadata"]["name"] == "pod-00000"
            assert first.raw["kind"] == "Pod" and first.raw["apiVersion"] == "v1"
            assert first.resource_version == c.get("pods", "pod-00000")["metadata"]["resourceVersion"]

            pod = c.get("pods", "pod-00001")
            pod["metadata"]["labels"]["tier"] = "db"
            c.update("pods", pod)
            c.delete("pods", "pod-00002")
            c.create("pods", make_pod(99))
            got = await h.take(3)
            assert keys(got) == [("update", "pods/default/pod-00001"), ("delete", "pods/default/pod-00002"),
                                 ("add", "pods/default/pod-00099")]
            assert got[0].raw["metadata"]["labels"]["tier"] == "db"
            # bookmarks are asked for on every watch, never assumed
            assert all(q["allowWatchBookmarks"] == "true" for q in c.watch_requests("pods"))


@pytest.mark.parametrize("fmt", FORMATS)
async def test_fixture_pod_round_trips(socket_server: RunningServer, fmt: str, testdata: Any) -> None:
    c = socket_server.cluster
    served = c.create("pods", fixture_object(testdata, "core.v1.Pod", name="fixture"))
    reader = reader_for(socket_server, content_type=fmt, watch_list=False, once=True)
    with trio.fail_after(30):
        async with run_reader(reader) as h:
            await h.drain()
            (entry,) = h.entries
    assert entry.raw == served
    assert entry.uid == served["metadata"]["uid"]


async def test_watch_list_refused_falls_back_to_list(server: RunningServer, autojump_clock: Any) -> None:
    c = server.cluster
    c.watch_list = False  # as with the WatchList feature gate off: 422
    c.create("pods", make_pod(1))
    with trio.fail_after(GUARD):
        async with run_reader(reader_for(server)) as h:
            assert keys(h.entries) == [("add", "pods/default/pod-00001")]
            assert h.counters["reader.apiserver.watchlist_fallbacks"] == 1
            assert len(c.list_requests("pods")) == 1
            c.create("pods", make_pod(2))
            assert keys(await h.take(1)) == [("add", "pods/default/pod-00002")]


async def test_watch_list_without_the_end_bookmark_falls_back_to_list(server: RunningServer,
                                                                     autojump_clock: Any) -> None:
    c = server.cluster
    c.watch_list_ignored = True  # plain watch: the state as ADDED events, no end bookmark
    c.create("pods", make_pod(1))
    with trio.fail_after(GUARD):
        async with run_reader(reader_for(server), started=False) as h:
            # The initial state is handed on as it arrives (memory stays bounded)...
            assert keys(await h.take(1)) == [("add", "pods/default/pod-00001")]
            c.end_watches()  # ...and when the stream ends without the bookmark, LIST re-confirms it
            assert keys(await h.take(1)) == [("snapshot", "pods/default/pod-00001")]
            assert h.counters["reader.apiserver.watchlist_fallbacks"] == 1
            assert len(c.list_requests("pods")) == 1


async def test_bookmarks_advance_the_resume_version(server: RunningServer, autojump_clock: Any) -> None:
    c = server.cluster
    c.create("pods", make_pod(1))
    with trio.fail_after(GUARD):
        async with run_reader(reader_for(server, watch_list=False)) as h:
            await trio.testing.wait_all_tasks_blocked()
            c.create("configmaps", {"metadata": {"name": "elsewhere"}})  # moves the version, not pods
            c.send_bookmarks()
            await trio.testing.wait_all_tasks_blocked()
            assert h.counters["reader.apiserver.bookmarks"] == 1
            c.end_watches()
            await trio.testing.wait_all_tasks_blocked()
            c.create("pods", make_pod(2))
            assert keys(await h.take(1)) == [("add", "pods/default/pod-00002")]
            watches = c.watch_requests("pods")
            assert [q["resourceVersion"] for q in watches] == ["1001", "1002"]


@pytest.mark.parametrize("fmt", FORMATS)
async def test_unreadable_objects_and_unknown_events_are_counted_and_skipped(
        server: RunningServer, fmt: str, autojump_clock: Any) -> None:
    c = server.cluster
    c.create("pods", make_pod(1))
    if fmt == "json":
        c.inject("pods", b'{"type":"ADDED","object":"not an object"}\n')
        c.inject("pods", b'{"type":"SURPRISE","object":{}}\n')
    else:
        from tattler_etcd import codec

        def frame(kind: str, raw: bytes) -> bytes:
            event = codec.encode({"kind": "WatchEvent", "apiVersion": "v1", "type": kind, "object": None})
            body = _unwrap(event) + b"\x12" + bytes([len(raw) + 2]) + b"\x0a" + bytes([len(raw)]) + raw
            return len(body).to_bytes(4, "big") + body

        c.inject("pods", frame("ADDED", b"k8s\x00\x0a\x03bad"))  # an envelope cut short
        c.inject("pods", frame("SURPRISE", b""))
    with trio.fail_after(GUARD):
        async with run_reader(reader_for(server, content_type=fmt, watch_list=False)) as h:
            c.create("pods", make_pod(2))
            assert keys(await h.take(1)) == [("add", "pods/default/pod-00002")]
            assert h.counters["reader.apiserver.decode_errors"] == 1
            assert h.counters["reader.apiserver.unknown_events"] == 1


def _unwrap(envelope: bytes) -> bytes:
    from tests.fake_apiserver import _unwrap_watch_event

    return _unwrap_watch_event(envelope)


async def test_no_bookmarks_from_the_server_is_fine(server: RunningServer, autojump_clock: Any) -> None:
    c = server.cluster
    c.bookmarks = False
    c.create("pods", make_pod(1))
    with trio.fail_after(GUARD):
        async with run_reader(reader_for(server, watch_list=False)) as h:
            c.send_bookmarks()
            c.create("pods", make_pod(2))
            assert keys(await h.take(1)) == [("add", "pods/default/pod-00002")]
            assert h.counters["reader.apiserver.bookmarks"] == 0


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("watch_list", [False, True])
async def test_410_relists_with_snapshot_and_delete(server: RunningServer, fmt: str, watch_list: bool,
                                                   autojump_clock: Any) -> None:
    c = server.cluster
    for i in range(4):
        c.create("pods", make_pod(i))
    with trio.fail_after(GUARD):
        async with run_reader(reader_for(server, content_type=fmt, watch_list=watch_list)) as h:
            await trio.testing.wait_all_tasks_blocked()
            # While the reader is not watching, pod 3 goes and history is compacted.
            c.end_watches()
            c.delete("pods", "pod-00003")
            c.create("pods", make_pod(4))
            c.compact()
            got = await h.take(5)
            assert sorted(keys(got)) == [
                ("delete", "pods/default/pod-00003"),
                ("snapshot", "pods/default/pod-00000"), ("snapshot", "pods/default/pod-00001"),
                ("snapshot", "pods/default/pod-00002"), ("snapshot", "pods/default/pod-00004"),
            ]
            assert got[-1].change is ChangeType.DELETE
            # the DELETE carries the last state we saw
            assert got[-1].raw["metadata"]["name"] == "pod-00003"
            assert h.counters["reader.apiserver.expired"] == 1
            if not watch_list:
                # the relist after a 410 is a consistent read (no resourceVersion)
                assert "resourceVersion" not in c.list_requests("pods")[-1]
            c.create("pods", make_pod(5))
            assert keys(await h.take(1)) == [("add", "pods/default/pod-00005")]


async def test_relists_page_and_an_expired_continue_token_restarts(server: RunningServer,
                                                                    autojump_clock: Any) -> None:
    c = server.cluster
    for i in range(6):
        c.create("pods", make_pod(i))
    reader = reader_for(server, watch_list=False, page_size=2)
    with trio.fail_after(GUARD):
        async with run_reader(reader) as h:
            await trio.testing.wait_all_tasks_blocked()
            c.end_watches()
            c.create("pods", make_pod(6))
            c.compact()  # the rewatch gets a 410, and the relist is a paged consistent read
            assert keys(await h.take(2)) == [("snapshot", "pods/default/pod-00000"),
                                             ("snapshot", "pods/default/pod-00001")]
            c.create("pods", make_pod(7))
            c.compact()  # the token of the next page now points to compacted history
            got = await h.take(8)
            assert [e.change for e in got] == [ChangeType.SNAPSHOT] * 8
            lists = c.list_requests("pods")
            assert lists[1:] == [{"limit": "2"}, {"limit": "2", "continue": lists[2]["continue"]},
                                 {"limit": "2"}, {"limit": "2", "continue": lists[4]["continue"]},
                                 {"limit": "2", "continue": lists[5]["continue"]},
                                 {"limit": "2", "continue": lists[6]["continue"]}]
            assert h.counters["reader.apiserver.expired"] == 2


async def test_429_honours_retry_after(server: RunningServer, autojump_clock: Any) -> None:
    c = server.cluster
    c.create("pods", make_pod(1))
    c.fail(429, plural="pods", retry_after=7, times=2, message="slow down")
    start = trio.current_time()
    with trio.fail_after(GUARD):
        async with run_reader(reader_for(server, watch_list=False)) as h:
            assert keys(h.entries) == [("add", "pods/default/pod-00001")]
            assert trio.current_time() - start == pytest.approx(14.0)
            assert h.counters["reader.apiserver.retries"] == 2


async def test_server_errors_back_off_capped(server: RunningServer, autojump_clock: Any) -> None:
    c = server.cluster
    c.create("pods", make_pod(1))
    c.fail(500, plural="pods", times=8)
    start = trio.current_time()
    with trio.fail_after(GUARD):
        async with run_reader(reader_for(server, watch_list=False)) as h:
            assert len(h.entries) == 1
    # 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, then the 30 s cap twice (rand() = 0: no jitter)
    assert trio.current_time() - start == pytest.approx(0.8 + 1.6 + 3.2 + 6.4 + 12.8 + 25.6 + 30 + 30)


@pytest.mark.parametrize(("status", "word"), [(401, "Unauthorized"), (403, "Forbidden")])
async def test_access_denied_is_permanent_and_names_the_resource(server: RunningServer, status: int,
                                                                 word: str) -> None:
    c = server.cluster
    if status == 403:
        c.forbidden.add("pods")
    else:
        c.token = "right"
    with trio.fail_after(30), pytest.raises(AccessDeniedError) as info:
        async with run_reader(reader_for(server, watch_list=False)):
            pass
    msg = str(info.value)
    if status == 403:
        assert msg.startswith("list pods: 403 Forbidden: pods is forbidden: User ")
        assert msg.endswith("(the account may not do this (check RBAC))")
    else:
        assert msg == "discovery /apis: 401 Unauthorized: Unauthorized (the credentials were refused)"


async def test_forbidden_watch_after_list(server: RunningServer, autojump_clock: Any) -> None:
    c = server.cluster
    c.fail(403, plural="pods", watch=True, message="no watching")
    with trio.fail_after(GUARD), pytest.raises(AccessDeniedError,
                                               match=r"^watch pods: 403 Forbidden: no watching \(.*\)$"):
        async with run_reader(reader_for(server, watch_list=False)) as h:
            await h.drain()


async def test_in_stream_410_relists(server: RunningServer, autojump_clock: Any) -> None:
    c = server.cluster
    c.create("pods", make_pod(1))
    c.fail(410, plural="pods", watch=True, in_stream=True, reason="Expired", message="too old")
    with trio.fail_after(GUARD):
        async with run_reader(reader_for(server, watch_list=False)) as h:
            got = await h.take(1)
            assert keys(got) == [("snapshot", "pods/default/pod-00001")]
            assert h.counters["reader.apiserver.expired"] == 1


@pytest.mark.parametrize("fmt", FORMATS)
async def test_in_stream_server_error_backs_off_and_rewatches_from_the_same_version(
        server: RunningServer, fmt: str, autojump_clock: Any) -> None:
    c = server.cluster
    c.create("pods", make_pod(1))
    c.fail(500, plural="pods", watch=True, in_stream=True, message="etcd is sad")
    with trio.fail_after(GUARD):
        async with run_reader(reader_for(server, content_type=fmt, watch_list=False)) as h:
            c.create("pods", make_pod(2))
            assert keys(await h.take(1)) == [("add", "pods/default/pod-00002")]
            assert h.counters["reader.apiserver.retries"] == 1
            assert [q["resourceVersion"] for q in c.watch_requests("pods")] == ["1001", "1001"]


async def test_periodic_relist(server: RunningServer, autojump_clock: Any) -> None:
    c = server.cluster
    c.create("pods", make_pod(1))
    c.create("pods", make_pod(2))
    reader = reader_for(server, watch_list=False, relist_interval=3600)
    with trio.fail_after(2 * 3600):
        async with run_reader(reader) as h:
            start = trio.current_time()
            got = await h.take(2)
            assert keys(got) == [("snapshot", "pods/default/pod-00001"), ("snapshot", "pods/default/pod-00002")]
            assert trio.current_time() - start == pytest.approx(3600)
            assert h.counters["reader.apiserver.periodic_relists"] == 1
            # a periodic relist reads "not older than" what we saw
            assert c.list_requests("pods")[-1]["resourceVersionMatch"] == "NotOlderThan"


@pytest.mark.parametrize("fmt", FORMATS)
async def test_custom_resources_fall_back_to_json(socket_server: RunningServer, fmt: str) -> None:
    c = socket_server.cluster
    c.create("widgets", make_widget(1))
    c.create("pods", make_pod(1))
    reader = reader_for(socket_server, ["pods", "widgets.example.com"], content_type=fmt, once=True)
    with trio.fail_after(30):
        async with run_reader(reader) as h:
            entries = [*h.entries[: h.cursor], *await h.drain()]
    by_kind = {e.kind: e for e in entries}
    assert set(by_kind) == {"Pod", "Widget"}
    assert by_kind["Widget"].key == "widgets.example.com/default/widget-1"
    assert by_kind["Widget"].value is None  # JSON
    assert (by_kind["Pod"].value is not None) == (fmt == "protobuf")
    accepts = [h["accept"] for (_m, p, q, h) in c.requests if p.endswith("/widgets")]
    assert accepts and all(a.startswith("application/vnd.kubernetes.protobuf") == (fmt == "protobuf")
                           for a in accepts)


async def test_unknown_resource_is_a_config_error(server: RunningServer) -> None:
    with trio.fail_after(30), pytest.raises(ConfigError, match=r"^resource 'gadgets': the server has no such resource$"):
        async with run_reader(reader_for(server, ["gadgets"])):
            pass


async def test_discovery_finds_groups(server: RunningServer) -> None:
    c = server.cluster
    c.create("deployments", {"metadata": {"name": "web"}, "spec": {"replicas": 1}})
    with trio.fail_after(30):
        async with run_reader(reader_for(server, ["deployments"], content_type="json", once=True)) as h:
            entries = [*h.entries[: h.cursor], *await h.drain()]
    assert keys(entries) == [("add", "deployments.apps/default/web")]
    assert entries[0].api_version == "apps/v1"


async def test_follow_false_ends_at_the_end_of_each_watch_body(server: RunningServer,
                                                               autojump_clock: Any) -> None:
    """Replays: no reconnect, resources strictly in the order given."""
    c = server.cluster
    c.create("pods", make_pod(1))
    c.create("nodes", {"metadata": {"name": "n1"}})
    reader = reader_for(server, ["nodes", "pods"], follow=False, watch_list=False)
    with trio.fail_after(GUARD):
        async with run_reader(reader) as h:
            assert keys(h.entries) == [("add", "nodes/n1"), ("add", "pods/default/pod-00001")]
            await trio.testing.wait_all_tasks_blocked()
            c.create("pods", make_pod(2))
            c.create("nodes", {"metadata": {"name": "n2"}})
            c.end_watches()  # the recorded bodies end here
            rest = await h.drain()
    # nodes' watch is read to its end first, then pods': never interleaved
    assert keys(rest) == [("add", "nodes/n2"), ("add", "pods/default/pod-00002")]
    assert len(c.watch_requests()) == 2


async def test_injected_http_client(server: RunningServer) -> None:
    seen: list[str] = []

    async def log_request(request: httpx.Request) -> None:
        seen.append(request.url.path)

    server.cluster.create("pods", make_pod(1))
    http = server.client()
    http.event_hooks["request"] = [log_request]
    reader = APIServerReader([ResourceRef("", "v1", "pods", "Pod", True)], http=http, once=True,
                             content_type="json")
    with trio.fail_after(30):
        async with run_reader(reader) as h:
            entries = [*h.entries[: h.cursor], *await h.drain()]
    await http.aclose()
    assert keys(entries) == [("add", "pods/default/pod-00001")]
    assert seen == ["/api/v1/pods"]  # no discovery for a ResourceRef


async def test_a_watch_that_ends_at_once_is_backed_off(server: RunningServer, autojump_clock: Any) -> None:
    c = server.cluster
    c.create("pods", make_pod(1))
    reader = reader_for(server, watch_list=False)
    with trio.fail_after(GUARD):
        async with run_reader(reader) as h:
            for _ in range(3):
                await trio.testing.wait_all_tasks_blocked()
                c.end_watches()
            await trio.testing.wait_all_tasks_blocked()
            assert h.counters["reader.apiserver.retries"] >= 1


def test_bad_arguments() -> None:
    cfg = ClusterConfig("http://127.0.0.1:1")
    with pytest.raises(ConfigError, match=r"^APIServerReader: give at least one resource$"):
        APIServerReader([], config=cfg)
    with pytest.raises(ConfigError, match=r"^content_type: 'yaml' is neither 'protobuf' nor 'json'$"):
        APIServerReader(["pods"], config=cfg, content_type="yaml")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^APIServerReader: give config, http or client_factory$"):
        APIServerReader(["pods"])
    assert issubclass(AccessDeniedError, PermanentReaderError)


async def test_status_says_backing_off_with_the_last_error_until_it_recovers(server: RunningServer,
                                                                            autojump_clock: Any) -> None:
    c = server.cluster
    c.create("pods", make_pod(1))
    c.fail(503, plural="pods", times=2, message="etcd is sad")
    reader = reader_for(server, watch_list=False)
    with trio.fail_after(GUARD):
        async with run_reader(reader, started=False) as h:
            await trio.testing.wait_all_tasks_blocked()
            status = reader.status
            assert (status.state, status.synced) == ("backing_off", False)
            assert status.last_error == "list pods: 503 ServiceUnavailable: etcd is sad"
            assert status.down_since is not None
            await h.take(1)
            await trio.testing.wait_all_tasks_blocked()
            status = reader.status
            assert (status.state, status.synced, status.last_error, status.down_since) == ("watching", True, "", None)
            assert status.counters["retries"] == 2
