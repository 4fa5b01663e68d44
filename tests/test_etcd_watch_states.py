"""EtcdReader's state machine against a scripted gateway (httpx.MockTransport), on trio's virtual clock.

Each watch request gets the next scripted body (one chunk, as a replayed
recording gives it); once a resource's script is used up, its next watch
request waits forever, so a live reader just sits there until the test is done.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from tattler_etcd.data import ChangeType, Entry
from tattler_etcd.errors import AccessDeniedError
from tattler_etcd.readers import Backoff
from tattler_etcd.readers.etcd import EtcdReader
from tattler_etcd.stats import Counters
from tests.support.etcd_reading import Tracker, obj

ADD, UPDATE, DELETE, SNAPSHOT = ChangeType.ADD, ChangeType.UPDATE, ChangeType.DELETE, ChangeType.SNAPSHOT


def b64(b: bytes | str) -> str:
    return base64.b64encode(b.encode() if isinstance(b, str) else b).decode()


def kv(k: str, value: bytes, create: int, mod: int) -> dict[str, Any]:
    return {"key": b64(k), "value": b64(value), "create_revision": str(create), "mod_revision": str(mod)}


def line(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode() + b"\n"


def created(rev: int) -> bytes:
    return line({"result": {"header": {"revision": str(rev)}, "created": True}})


def events(rev: int, *evs: dict[str, Any]) -> bytes:
    return line({"result": {"header": {"revision": str(rev)}, "events": list(evs)}})


def progress(rev: int) -> bytes:
    return line({"result": {"header": {"revision": str(rev)}}})


def put(k: str, value: bytes, create: int, mod: int) -> dict[str, Any]:
    return {"kv": kv(k, value, create, mod)}


def delete(k: str, mod: int, prev: bytes | None, prev_rev: int = 1) -> dict[str, Any]:
    ev: dict[str, Any] = {"type": "DELETE", "kv": {"key": b64(k), "mod_revision": str(mod)}}
    if prev is not None:
        ev["prev_kv"] = kv(k, prev, prev_rev, prev_rev)
    return ev


class FakeGateway:
    """Answers /version, /v3/kv/range (paged, from ``store``) and /v3/watch (from ``scripts``)."""

    def __init__(self, revision: int, store: dict[str, bytes], scripts: dict[str, list[bytes]]) -> None:
        self.revision = revision
        self.store = dict(store)
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.requests: list[tuple[str, dict[str, Any], float]] = []
        self.range_hook: Callable[[dict[str, Any]], httpx.Response | None] | None = None
        #: Set when a resource's watch has used up its script and waits (the reader is idle).
        self.idle: dict[str, trio.Event] = {}

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/version":
            return httpx.Response(200, json={"etcdserver": "3.4.23", "etcdcluster": "3.4.0"})
        body = json.loads(request.content)
        self.requests.append((path, body, trio.current_time()))
        if path == "/v3/kv/range":
            if self.range_hook is not None:
                hooked = self.range_hook(body)
                if hooked is not None:
                    return hooked
            start = base64.b64decode(body["key"]).decode()
            end = base64.b64decode(body.get("range_end", "")).decode()
            keys = sorted(k for k in self.store if start <= k < end)
            limit = body.get("limit", 0) or len(keys)
            page = keys[:limit]
            doc: dict[str, Any] = {"header": {"revision": str(body.get("revision") or self.revision)},
                                   "kvs": [kv(k, self.store[k], 1, 1) for k in page]}
            if len(keys) > limit:
                doc["more"] = True
            return httpx.Response(200, json=doc)
        if path == "/v3/watch":
            prefix = base64.b64decode(body["create_request"]["key"]).decode()
            segment = prefix.removeprefix("/registry/").rstrip("/")
            script = self.scripts.get(segment, [])
            if not script:
                self.idle.setdefault(segment, trio.Event()).set()
                await trio.sleep_forever()
            return httpx.Response(200, content=script.pop(0))
        return httpx.Response(404)

    def watch_starts(self, segment: str) -> list[int]:
        return [
            int(b["create_request"]["start_revision"]) for p, b, _ in self.requests
            if p == "/v3/watch" and base64.b64decode(b["create_request"]["key"]).decode() == f"/registry/{segment}/"
        ]


NO_JITTER = functools.partial(Backoff, rand=lambda: 0.0)

P1, P2, P3 = "/registry/pods/ns/p1", "/registry/pods/ns/p2", "/registry/pods/ns/p3"


async def run_until(
    reader: EtcdReader, tracker: Tracker, done: Callable[[], bool], gw: FakeGateway | None = None,
) -> Counters:
    """Run a live reader until ``done`` holds and (with ``gw``) every watch has used up its script."""
    counters = Counters()
    send, recv = trio.open_memory_channel[list[Entry]](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tracker.consume, recv)
        await nursery.start(reader.run, send, counters)
        await tracker.wait_for(done)
        if gw is not None:
            for segment in gw.scripts:
                await gw.idle.setdefault(segment, trio.Event()).wait()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    return counters


async def test_reconnects_with_backoff_from_the_last_event_or_progress(autojump_clock: trio.abc.Clock) -> None:
    v1 = obj("pods", "p1", "ns", uid="u1")
    gw = FakeGateway(4, {P1: v1}, {"pods": [
        created(4) + events(6, put(P2, obj("pods", "p2", "ns"), 5, 5), put(P1, v1, 1, 6))
        + line({"error": {"grpc_code": 14, "message": "unavailable"}}),
        created(6) + progress(9),            # then the stream just ends
        created(9) + events(10, delete(P1, 10, v1, 6)),
    ]})
    tracker = Tracker()
    async with gw.client() as client:
        reader = EtcdReader("http://etcd:2379", resources=["pods"], client=client,
                            backoff_factory=lambda: Backoff(initial=1.0, cap=4.0, rand=lambda: 0.5))
        counters = await run_until(reader, tracker, lambda: any(e.change is DELETE for e in tracker.entries), gw)
    assert gw.watch_starts("pods") == [5, 7, 10, 11]
    got = [(e.key, e.change, e.resource_version) for e in tracker.entries]
    assert got == [
        (P1, ADD, "1"), (P2, ADD, "5"), (P1, UPDATE, "6"), (P1, DELETE, "10")], got
    assert tracker.entries[-1].uid == "u1"
    assert counters["reader.etcd.retries"] == 3
    # Back-off: 1 s stretched by rand() = 0.5, each time: every stream moved the
    # revision on (an event, a progress line), so the back-off starts over.
    times = [t for p, _, t in gw.requests if p == "/v3/watch"]
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == [1.5, 1.5, 1.5]


async def test_canceled_watch_without_compaction_is_watched_again(autojump_clock: trio.abc.Clock) -> None:
    gw = FakeGateway(4, {}, {"pods": [
        created(4) + line({"result": {"header": {"revision": "4"}, "canceled": True, "cancel_reason": "x"}}),
        created(4) + events(5, put(P1, obj("pods", "p1", "ns"), 5, 5)),
    ]})
    tracker = Tracker()
    async with gw.client() as client:
        reader = EtcdReader("http://etcd:2379", resources=["pods"], client=client, backoff_factory=NO_JITTER)
        counters = await run_until(reader, tracker, lambda: P1 in tracker.state, gw)
    assert gw.watch_starts("pods") == [5, 5, 6]
    assert counters["reader.etcd.retries"] == 2


async def test_compacted_watch_relists_snapshot_and_deletes_vanished(autojump_clock: trio.abc.Clock) -> None:
    v1, v2 = obj("pods", "p1", "ns", uid="u1"), obj("pods", "p2", "ns", uid="u2")
    gw = FakeGateway(4, {P1: v1, P2: v2}, {"pods": [
        created(4) + line({"result": {"header": {"revision": "20"}, "canceled": True,
                                      "compact_revision": "15"}}),
    ]})
    tracker = Tracker()
    async with gw.client() as client:
        reader = EtcdReader("http://etcd:2379", resources=["pods"], client=client, backoff_factory=NO_JITTER)
        send, recv = trio.open_memory_channel[list[Entry]](0)
        counters = Counters()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracker.consume, recv)
            await nursery.start(reader.run, send, counters)
            # Meanwhile: p2 deleted, p3 created; the store is at 20.
            del gw.store[P2]
            gw.store[P3] = obj("pods", "p3", "ns")
            gw.revision = 20
            await tracker.wait_for(lambda: P2 not in tracker.state)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    relist = [(e.key, e.change, e.resource_version) for e in tracker.entries[2:]]
    # A SNAPSHOT carries the object's own mod_revision; a vanished object's DELETE the relist's revision.
    assert relist == [(P1, SNAPSHOT, "1"), (P3, SNAPSHOT, "1"), (P2, DELETE, "20")]
    vanished = tracker.entries[-1]
    assert (vanished.uid, vanished.kind, vanished.api_version) == ("u2", "Pod", "v1")
    assert vanished.raw == {"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": "p2", "namespace": "ns", "uid": "u2", "resourceVersion": "20"}}
    assert counters["reader.etcd.expired"] == 1
    assert gw.watch_starts("pods") == [5, 21]


async def test_compaction_during_the_initial_list_lists_again(autojump_clock: trio.abc.Clock) -> None:
    store = {f"/registry/pods/ns/p{i}": obj("pods", f"p{i}", "ns", uid=f"u{i}") for i in range(5)}
    gw = FakeGateway(4, store, {})
    pinned_pages = 0

    def compact_second_page(body: dict[str, Any]) -> httpx.Response | None:
        nonlocal pinned_pages
        if body.get("revision") == 4:
            pinned_pages += 1
            del gw.store["/registry/pods/ns/p0"]  # vanished meanwhile (already handed on)
            gw.revision = 9
            return httpx.Response(400, json={"error": "etcdserver: mvcc: required revision has been compacted",
                                             "code": 11, "message": "mvcc: required revision has been compacted"})
        return None

    gw.range_hook = compact_second_page
    tracker = Tracker()
    async with gw.client() as client:
        reader = EtcdReader("http://etcd:2379", resources=["pods"], client=client, page_size=2, once=True)
        counters = Counters()
        send, recv = trio.open_memory_channel[list[Entry]](0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracker.consume, recv)
            gw.range_hook = compact_second_page
            await reader.run(send, counters)
    changes = [(e.name, e.change) for e in tracker.entries]
    assert changes[:2] == [("p0", ADD), ("p1", ADD)]
    assert changes[2:] == [("p1", SNAPSHOT), ("p2", SNAPSHOT), ("p3", SNAPSHOT), ("p4", SNAPSHOT), ("p0", DELETE)]
    assert pinned_pages == 1 and counters["reader.etcd.expired"] == 1


async def test_delete_without_prev_kv_is_built_from_the_index(autojump_clock: trio.abc.Clock) -> None:
    gw = FakeGateway(4, {P1: obj("pods", "p1", "ns", uid="u1")}, {"pods": [
        created(4) + events(7, delete(P1, 7, None), delete(P2, 7, None)),
    ]})
    tracker = Tracker()
    async with gw.client() as client:
        reader = EtcdReader("http://etcd:2379", resources=["pods"], client=client)
        counters = await run_until(reader, tracker, lambda: P1 not in tracker.state)
    e = tracker.entries[-1]
    assert (e.change, e.uid, e.resource_version, e.name) == (DELETE, "u1", "7", "p1")
    assert counters["reader.etcd.deletes_without_prev_kv"] == 2  # P2 was never known: counted, not handed on
    assert len(tracker.entries) == 2


async def test_periodic_relist_emits_snapshot_and_delete_then_watches_on(autojump_clock: trio.abc.Clock) -> None:
    gw = FakeGateway(4, {P1: obj("pods", "p1", "ns"), P2: obj("pods", "p2", "ns")}, {})
    tracker = Tracker()
    async with gw.client() as client:
        reader = EtcdReader("http://etcd:2379", resources=["pods"], client=client, relist_interval=60)
        send, recv = trio.open_memory_channel[list[Entry]](0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracker.consume, recv)
            await nursery.start(reader.run, send, Counters())
            t0 = trio.current_time()
            del gw.store[P2]
            gw.revision = 30
            await tracker.wait_for(lambda: P2 not in tracker.state)
            assert trio.current_time() - t0 == pytest.approx(60)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert [(e.key, e.change, e.resource_version) for e in tracker.entries[2:]] == [
        (P1, SNAPSHOT, "1"), (P2, DELETE, "30")]
    assert gw.watch_starts("pods") == [5, 31]


async def test_finite_mode_hands_on_each_message_as_it_arrives_and_ends_with_the_streams(
    autojump_clock: trio.abc.Clock,
) -> None:
    n1, n2 = "/registry/minions/n1", "/registry/minions/n2"
    scripts = {
        "pods": [created(4) + events(5, put(P1, obj("pods", "p1", "ns"), 5, 5))
                 + events(8, put(P2, obj("pods", "p2", "ns"), 7, 7), put(P1, obj("pods", "p1", "ns"), 5, 8))],
        "minions": [created(4) + events(6, put(n1, obj("minions", "n1"), 6, 6))
                    + events(9, put(n2, obj("minions", "n2"), 9, 9))],
    }
    orders = []
    for _ in range(5):
        gw = FakeGateway(4, {}, scripts)
        tracker = Tracker()
        async with gw.client() as client:
            reader = EtcdReader("http://etcd:2379", resources=["pods", "nodes"], client=client,
                                follow=False)
            with trio.fail_after(5):
                counters = Counters()
                send, recv = trio.open_memory_channel[list[Entry]](0)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(tracker.consume, recv)
                    await reader.run(send, counters)  # returns by itself: the bodies' ends are the end
        orders.append([(e.key, e.resource_version) for e in tracker.entries])
        assert counters["reader.etcd.retries"] == 0
    for order in orders:
        # Every event, each resource in its stream's order (no merge: across
        # resources the order is arrival order, which a replay paces).
        assert sorted(order) == sorted([(P1, "5"), (P1, "8"), (P2, "7"), (n1, "6"), (n2, "9")])
        assert [x for x in order if x[0] in (P1, P2)] == [(P1, "5"), (P2, "7"), (P1, "8")]
        assert [x for x in order if x[0] in (n1, n2)] == [(n1, "6"), (n2, "9")]


async def test_request_bodies_are_the_same_bytes_for_the_same_inputs(autojump_clock: trio.abc.Clock) -> None:
    bodies = []
    for _ in range(2):
        gw = FakeGateway(4, {P1: obj("pods", "p1", "ns", uid="u1")}, {"pods": [created(4)]})
        seen: list[bytes] = []

        async def handle(request: httpx.Request, gw: FakeGateway = gw, seen: list[bytes] = seen) -> httpx.Response:
            seen.append(request.content)
            return await gw.handle(request)

        async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
            reader = EtcdReader("http://etcd:2379", resources=["pods"], client=client, follow=False)
            await reader.run(trio.open_memory_channel[list[Entry]](10)[0], Counters())
        bodies.append(seen)
    assert bodies[0] == bodies[1]
    watch = json.loads(bodies[0][-1])
    assert watch == {"create_request": {"key": b64("/registry/pods/"), "range_end": b64("/registry/pods0"),
                                        "start_revision": 5, "prev_kv": True, "progress_notify": True}}


async def test_transient_range_errors_are_retried_and_access_denied_is_not(autojump_clock: trio.abc.Clock) -> None:
    gw = FakeGateway(4, {P1: obj("pods", "p1", "ns")}, {})
    failures = [httpx.Response(503, text="busy"), httpx.Response(429, text="slow down")]
    gw.range_hook = lambda body: failures.pop(0) if failures else None
    tracker = Tracker()
    async with gw.client() as client:
        reader = EtcdReader("http://etcd:2379", resources=["pods"], client=client, once=True)
        counters = Counters()
        send, recv = trio.open_memory_channel[list[Entry]](0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracker.consume, recv)
            await reader.run(send, counters)
    assert list(tracker.state) == [P1] and counters["reader.etcd.retries"] == 2

    gw.range_hook = lambda body: httpx.Response(403, json={"code": 7, "message": "permission denied"})
    async with gw.client() as client:
        reader = EtcdReader("http://etcd:2379", resources=["pods"], client=client, once=True)
        send, recv = trio.open_memory_channel[list[Entry]](0)
        with pytest.raises(AccessDeniedError, match=r"^etcd http://etcd:2379/v3/kv/range: HTTP 403, grpc code 7"):
            await reader.run(send, Counters())
        with pytest.raises(trio.EndOfChannel):
            recv.receive_nowait()


async def test_progress_callback_counts_the_initial_list(autojump_clock: trio.abc.Clock) -> None:
    store = {f"/registry/pods/ns/p{i}": obj("pods", f"p{i}", "ns") for i in range(5)}
    gw = FakeGateway(4, store, {})
    calls: list[tuple[int, bool]] = []
    async with gw.client() as client:
        reader = EtcdReader("http://etcd:2379", resources=["pods"], client=client, once=True, page_size=2,
                            progress=lambda n, done=False: calls.append((n, done)))
        await reader.run(trio.open_memory_channel[list[Entry]](10)[0], Counters())
    assert calls == [(2, False), (4, False), (5, False), (5, True)]


async def test_messages_that_arrived_together_go_on_as_one_chunk(autojump_clock: trio.abc.Clock) -> None:
    gw = FakeGateway(4, {P1: obj("pods", "p1", "ns")}, {"pods": [
        created(4) + events(5, put(P2, obj("pods", "p2", "ns"), 5, 5))
        + events(6, put(P3, obj("pods", "p3", "ns"), 6, 6)) + events(7, delete(P2, 7, None)),
    ]})
    tracker = Tracker()
    async with gw.client() as client:
        reader = EtcdReader("http://etcd:2379", resources=["pods"], client=client)
        await run_until(reader, tracker, lambda: P3 in tracker.state and P2 not in tracker.state, gw)
    assert tracker.chunks == 2  # the list's page, then the three watch messages together
    # The DELETE without prev_kv found P2 among the not yet applied updates of the same chunk.
    assert [(e.key, e.change) for e in tracker.entries[1:]] == [(P2, ADD), (P3, ADD), (P2, DELETE)]


class _Pieces:
    """An async iterable of byte pieces (a plain object: nothing left to finalize)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = list(pieces)

    def __aiter__(self) -> _Pieces:
        return self

    async def __anext__(self) -> bytes:
        if not self._pieces:
            raise StopAsyncIteration
        return self._pieces.pop(0)


async def test_lines_are_split_on_newlines_not_on_http_chunks() -> None:
    from tattler_etcd.readers.etcd.gateway import Gateway, endpoint_client

    body = created(4) + events(5, put(P1, obj("pods", "p1", "ns"), 5, 5)) + progress(9).rstrip(b"\n")
    pieces = [body[i:i + 7] for i in range(0, len(body), 7)]  # lines cut anywhere; no final newline

    async def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=_Pieces(pieces))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        gw = Gateway(client, [endpoint_client("http://etcd:2379")], api_path="/v3/")
        async with gw.watch(b"/registry/pods/", b"/registry/pods0", 5) as stream:
            kinds = [(m.kind, m.revision) async for m in stream]
    assert kinds == [("created", 4), ("events", 5), ("progress", 9)]


async def test_a_refused_endpoint_moves_to_the_next(autojump_clock: trio.abc.Clock) -> None:
    gw = FakeGateway(4, {P1: obj("pods", "p1", "ns")}, {})
    hosts: list[str] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "etcd-a":
            raise httpx.ConnectError("connection refused", request=request)
        return await gw.handle(request)

    tracker, counters = Tracker(), Counters()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        reader = EtcdReader("http://etcd-a:2379,http://etcd-b:2379", resources=["pods"], client=client, once=True)
        send, recv = trio.open_memory_channel[list[Entry]](0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracker.consume, recv)
            await reader.run(send, counters)
    assert list(tracker.state) == [P1]
    assert hosts[0] == "etcd-a" and set(hosts[1:]) == {"etcd-b"}
    assert counters["reader.etcd.retries"] == 1


async def test_status_while_etcd_cannot_be_reached_at_start(autojump_clock: trio.abc.Clock) -> None:
    gw = FakeGateway(4, {P1: obj("pods", "p1", "ns")}, {})
    down = True

    async def handle(request: httpx.Request) -> httpx.Response:
        if down:
            raise httpx.ConnectError("connection refused", request=request)
        return await gw.handle(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        reader = EtcdReader("http://etcd:2379", resources=["pods"], client=client, backoff_factory=NO_JITTER)
        tracker = Tracker()
        send, recv = trio.open_memory_channel[list[Entry]](0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracker.consume, recv)
            nursery.start_soon(reader.run, send, Counters())
            await trio.testing.wait_all_tasks_blocked()
            status = reader.status
            assert (status.state, status.synced) == ("backing_off", False)
            assert status.last_error.startswith("etcd http://etcd:2379/version: ")
            assert status.down_since is not None
            down = False
            await tracker.wait_for(lambda: P1 in tracker.state)
            await trio.testing.wait_all_tasks_blocked()
            status = reader.status
            assert (status.state, status.synced, status.last_error, status.down_since) == ("watching", True, "", None)
            nursery.cancel_scope.cancel()
    assert reader.status.state == "stopped"


async def test_the_next_page_is_on_the_wire_before_this_one_is_decoded(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """etcd works on page k+1 while we decode page k, rather than the two taking turns."""
    from tattler_etcd.readers.etcd import reader as reader_module

    store = {f"/registry/pods/ns/p{i}": obj("pods", f"p{i}", "ns") for i in range(6)}
    gw = FakeGateway(4, store, {})
    order: list[tuple[str, str]] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v3/kv/range":
            # As a real transport: checkpoints (the pooled connection, its lock), then the body is written.
            for _ in range(3):
                await trio.lowlevel.checkpoint()
            async for _ in request.stream:  # type: ignore[union-attr]
                pass
            order.append(("sent", base64.b64decode(json.loads(request.content)["key"]).decode()))
        return await gw.handle(request)

    decode = reader_module._EtcdLoop._entries_from_kvs

    def recording(self: Any, kvs: list[Any], change: ChangeType) -> list[Entry]:
        order.append(("decoded", kvs[0].key.decode()))
        return decode(self, kvs, change)

    monkeypatch.setattr(reader_module._EtcdLoop, "_entries_from_kvs", recording)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        reader = EtcdReader("http://etcd:2379", resources=["pods"], client=client, page_size=2, once=True)
        send, recv = trio.open_memory_channel[list[Entry]](0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader.run, send, Counters())
            got = [e.key async for chunk in recv for e in chunk]
    assert got == sorted(store)
    p = [f"/registry/pods/ns/p{i}" for i in range(6)]
    assert order == [("sent", "/registry/pods/"), ("sent", p[1] + "\0"), ("decoded", p[0]),
                     ("sent", p[3] + "\0"), ("decoded", p[2]), ("decoded", p[4])]
