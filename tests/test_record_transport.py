"""The recording transport: tees bodies, cuts streams on a line boundary, scrubs, filters headers."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
import trio
import yaml
from vcr.errors import CannotOverwriteExistingCassetteException

from tattler_etcd.replay import (
    WITHHELD,
    Recorder,
    RecordingInfo,
    dump_cassette,
    playback,
    read_recording,
)

BASE = "http://127.0.0.1:23790"


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def kv(key: str, value: bytes, rev: int) -> dict[str, object]:
    return {"key": b64(key.encode()), "value": b64(value), "create_revision": str(rev), "mod_revision": str(rev)}


def event_line(rev: int, *values: bytes) -> bytes:
    events = [{"kv": kv(f"/registry/pods/ns/p{rev}-{i}", v, rev)} for i, v in enumerate(values)]
    return json.dumps({"result": {"header": {"revision": str(rev)}, "events": events}}).encode() + b"\n"


CREATED = b'{"result":{"header":{"revision":"10"},"created":true}}\n'


def scrub(value: bytes, key: str) -> bytes:
    """A stand-in for the safety rules: hides the word 'hunter2', refuses 'garbage'."""
    from tattler_etcd.errors import DecodeError

    if value.startswith(b"garbage"):
        raise DecodeError("not an object", key=key)
    return value.replace(b"hunter2", b"REDACTED")


class FakeEtcd:
    """A scripted gateway: one range reply, and a watch that sends ``lines`` then stays open."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/v3/kv/range":
            body = {"header": {"revision": "10"}, "kvs": [
                kv("/registry/pods/ns/a", b'{"env":"hunter2"}', 5),
                kv("/registry/pods/ns/b", b"garbage", 6),
            ], "count": "2"}
            return httpx.Response(200, json=body, headers={"set-cookie": "s=1", "x-etcd": "yes"})
        if request.url.path == "/v3/watch":
            return httpx.Response(200, content=self._stream(), headers={"content-type": "application/json"})
        return httpx.Response(404, content=b"not found")

    def _stream(self) -> Lines:
        return Lines(self.lines)


class Lines:
    """A body that sends each line in two chunks, then stays open (an explicit iterator:
    a suspended async generator would be finalized late, by the GC)."""

    def __init__(self, lines: list[bytes]) -> None:
        # Split each line across two chunks: the recorder must join on newlines, not chunks.
        self.chunks = [part for line in lines for part in (line[:7], line[7:])]

    def __aiter__(self) -> Lines:
        return self

    async def __anext__(self) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        await trio.sleep_forever()
        raise AssertionError("unreachable")


async def record_exchange(fake: FakeEtcd, recorder: Recorder) -> list[bytes]:
    """Range then watch through the recorder; returns the watch lines the client saw."""
    seen: list[bytes] = []
    async with httpx.AsyncClient(transport=recorder.transport(httpx.MockTransport(fake))) as client:
        r = await client.post(f"{BASE}/v3/kv/range", content=b'{"key":"AA=="}',
                              headers={"authorization": "Bearer s3cr3t-token", "content-type": "application/json"})
        assert r.status_code == 200
        async with client.stream("POST", f"{BASE}/v3/watch", content=b'{"create_request":{"key":"AA=="}}',
                                 headers={"content-type": "application/json"}) as resp:
            async for line in resp.aiter_lines():
                seen.append(line.encode())
    return seen


async def test_a_watch_is_cut_after_the_line_that_reaches_the_event_limit() -> None:
    fake = FakeEtcd([CREATED, event_line(11, b"x"), event_line(12, b"y", b"z"), event_line(13, b"w")])
    recorder = Recorder(scrub_value=scrub, scrub_object=lambda o: o, max_events=3)
    with trio.fail_after(5):
        seen = await record_exchange(fake, recorder)
    # created (0 events), rev 11 (1), rev 12 (2 more: 3 reached): the stream ends there.
    assert [json.loads(s)["result"]["header"]["revision"] for s in seen] == ["10", "11", "12"]
    assert recorder.stopped_by == "events"
    assert recorder.watch_events == 3
    _, (watch_req, watch_resp) = recorder.interactions
    body = watch_resp["body"]["string"]
    assert body.endswith("\n") and body.count("\n") == 3
    assert body.encode() == CREATED + event_line(11, b"x") + event_line(12, b"y", b"z")
    assert watch_req["uri"] == f"{BASE}/v3/watch"


async def test_values_are_scrubbed_and_uninspectable_values_withheld() -> None:
    fake = FakeEtcd([CREATED, event_line(11, b'{"env":"hunter2"}')])
    recorder = Recorder(scrub_value=scrub, scrub_object=lambda o: o, max_events=1)
    with trio.fail_after(5):
        seen = await record_exchange(fake, recorder)
    (req, resp), (_, watch_resp) = recorder.interactions
    values = [base64.b64decode(k["value"]) for k in json.loads(resp["body"]["string"])["kvs"]]
    assert values == [b'{"env":"REDACTED"}', WITHHELD]
    assert b"hunter2" not in watch_resp["body"]["string"].encode()
    assert b"hunter2" not in b"".join(seen)  # the live reader sees the scrubbed bytes too
    # Credentials and run-specific headers never reach the file.
    assert "authorization" not in {k.lower() for k in req["headers"]}
    assert "set-cookie" not in {k.lower() for k in resp["headers"]}
    assert resp["headers"]["x-etcd"] == ["yes"]


async def test_stop_after_a_duration_cuts_open_streams(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeEtcd([CREATED, event_line(11, b"x")])
    recorder = Recorder(scrub_value=scrub, scrub_object=lambda o: o)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.stop_after, 30.0)
        seen = await record_exchange(fake, recorder)
    assert trio.current_time() == pytest.approx(30.0)
    assert recorder.stopped_by == "duration"
    assert len(seen) == 2
    assert recorder.interactions[1][1]["body"]["string"].encode() == CREATED + event_line(11, b"x")


async def test_after_stop_watches_wait_but_lists_go_on(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeEtcd([CREATED])
    recorder = Recorder(scrub_value=scrub, scrub_object=lambda o: o)
    recorder.stop()
    async with httpx.AsyncClient(transport=recorder.transport(httpx.MockTransport(fake))) as client:
        # A list's next page (a unary request) still goes through, recorded: a replay never ends mid-list.
        r = await client.post(f"{BASE}/v3/kv/range", content=b'{"key":"AA=="}')
        assert r.status_code == 200
        # A watch is never sent: the caller waits until cancelled; the file holds it as ending at once.
        for _ in range(2):
            with trio.move_on_after(100) as scope:
                await client.post(f"{BASE}/v3/watch", content=b"{}")
            assert scope.cancelled_caught
    assert [r.url.path for r in fake.requests] == ["/v3/kv/range"]
    (_, _), (watch_req, watch_resp) = recorder.interactions  # asked twice, recorded once
    assert watch_req["uri"] == f"{BASE}/v3/watch" and watch_resp["body"]["string"] == ""


async def test_settled_waits_for_the_list_in_flight() -> None:
    page_sent = trio.Event()
    finish_page = trio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        page_sent.set()
        await finish_page.wait()
        return httpx.Response(200, json={"header": {"revision": "1"}})

    recorder = Recorder(scrub_value=scrub, scrub_object=lambda o: o)
    settled_at: list[int] = []

    async def settle() -> None:
        await recorder.settled(cushion=0.0)
        settled_at.append(len(recorder.interactions))

    async with httpx.AsyncClient(transport=recorder.transport(httpx.MockTransport(slow))) as client, \
            trio.open_nursery() as nursery:
        nursery.start_soon(lambda: client.post(f"{BASE}/v3/kv/range", content=b"{}"))
        await page_sent.wait()
        recorder.stop()
        nursery.start_soon(settle)
        await trio.testing.wait_all_tasks_blocked()
        assert settled_at == []  # the page is still in flight
        finish_page.set()
    assert settled_at == [1]


async def test_hold_parks_matching_requests_until_release() -> None:
    fake = FakeEtcd([CREATED, event_line(11, b"x")])
    recorder = Recorder(scrub_value=scrub, scrub_object=lambda o: o, max_events=1)
    gate = recorder.hold(lambda r: r.url.path.endswith("/watch"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(record_exchange, fake, recorder)
        await gate.wait_held(1)
        assert [r.url.path for r in fake.requests] == ["/v3/kv/range"]
        gate.release()
    assert [r.url.path for r in fake.requests] == ["/v3/kv/range", "/v3/watch"]


async def test_a_recorded_exchange_plays_back_through_vcrpy(tmp_path: Path) -> None:
    fake = FakeEtcd([CREATED, event_line(11, b"x"), event_line(12, b"y")])
    recorder = Recorder(scrub_value=scrub, scrub_object=lambda o: o, max_events=2)
    with trio.fail_after(5):
        live = await record_exchange(fake, recorder)
    path = tmp_path / "c.yaml"
    dump_cassette(path, recorder.interactions, RecordingInfo(source="etcd", resources=("pods",), endpoint=BASE,
                                                             timing=tuple(recorder.timings)))
    info = read_recording(path)
    assert info.interactions == 2 and info.resources == ("pods",)
    # vcrpy's own loader reads it: plain cassette keys, and our metadata beside them.
    doc = yaml.safe_load(path.read_text())
    assert sorted(doc) == ["interactions", "metadata", "version"]

    with playback(path):
        async with httpx.AsyncClient() as client:
            r = await client.post(f"{BASE}/v3/kv/range", content=b'{"key":"AA=="}',
                                  headers={"content-type": "application/json"})
            assert r.json()["header"]["revision"] == "10"
            async with client.stream("POST", f"{BASE}/v3/watch", content=b'{"create_request":{"key":"AA=="}}',
                                     headers={"content-type": "application/json"}) as resp:
                replayed = [line.encode() async for line in resp.aiter_lines()]
            assert replayed == live  # the body ends where the recording ended: no hang
            with pytest.raises(CannotOverwriteExistingCassetteException):
                # Asked twice: not allowed (the end of the recording is the end).
                await client.post(f"{BASE}/v3/watch", content=b'{"create_request":{"key":"AA=="}}',
                                  headers={"content-type": "application/json"})
            with pytest.raises(CannotOverwriteExistingCassetteException):
                # Same path, another body: the body is part of the match.
                await client.post(f"{BASE}/v3/kv/range", content=b'{"key":"AQ=="}',
                                  headers={"content-type": "application/json"})


async def test_gzip_bodies_stored_plain_bad_protobuf_withheld_other_types_refused() -> None:
    import gzip

    from tattler_etcd.errors import RecordingError

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v3/kv/range":
            body = gzip.compress(b'{"header":{"revision":"3"},"kvs":[]}')
            return httpx.Response(200, content=body, headers={"content-encoding": "gzip"})
        if request.url.path == "/v3/watch":
            return httpx.Response(404, content=b'{"error":"no such path"}')
        if request.url.path == "/api/v1/pods":
            return httpx.Response(200, content=b"garbage, not k8s protobuf",
                                  headers={"content-type": "application/vnd.kubernetes.protobuf"})
        return httpx.Response(200, content=b"hello", headers={"content-type": "text/plain"})

    recorder = Recorder(scrub_value=scrub, scrub_object=lambda o: o)
    async with httpx.AsyncClient(transport=recorder.transport(httpx.MockTransport(handler))) as client:
        r = await client.post(f"{BASE}/v3/kv/range", content=b"{}")
        assert r.json()["header"]["revision"] == "3"
        async with client.stream("POST", f"{BASE}/v3/watch", content=b"{}") as resp:
            assert resp.status_code == 404 and await resp.aread() == b'{"error":"no such path"}'
        r = await client.get(f"{BASE}/api/v1/pods")
        assert r.content == WITHHELD  # not an object the rules can read: fail closed
        with pytest.raises(RecordingError, match=r"^/healthz: cannot record a 'text/plain' reply"):
            await client.get(f"{BASE}/healthz")
    (_, resp1), (_, resp2), (_, resp3) = recorder.interactions
    assert resp3["body"]["string"] == WITHHELD.decode()
    assert resp1["body"]["string"] == '{"header":{"revision":"3"},"kvs":[]}'
    assert "content-encoding" not in resp1["headers"]
    assert resp2["status"]["code"] == 404 and resp2["body"]["string"] == '{"error":"no such path"}'


async def test_a_stop_during_the_list_still_gives_a_replayable_file(tmp_path: Path) -> None:
    fake = FakeEtcd([CREATED, event_line(11, b"x")])
    recorder = Recorder(scrub_value=scrub, scrub_object=lambda o: o)
    lists = recorder.hold(lambda r: r.url.path.endswith("/range"))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(record_exchange, fake, recorder)
            await lists.wait_held(1)
            recorder.stop("duration")  # the limit is reached while the list is in flight
            lists.release()
            await recorder.settled(cushion=0.0)
            nursery.cancel_scope.cancel()
    assert [r.url.path for r in fake.requests] == ["/v3/kv/range"]  # the watch was never sent
    path = tmp_path / "mid-list.yaml"
    dump_cassette(path, recorder.interactions, RecordingInfo(source="etcd", resources=("pods",), endpoint=BASE,
                                                             timing=tuple(recorder.timings)))
    with playback(path):
        async with httpx.AsyncClient() as client:
            r = await client.post(f"{BASE}/v3/kv/range", content=b'{"key":"AA=="}',
                                  headers={"content-type": "application/json"})
            assert len(r.json()["kvs"]) == 2
            async with client.stream("POST", f"{BASE}/v3/watch", content=b'{"create_request":{"key":"AA=="}}',
                                     headers={"content-type": "application/json"}) as resp:
                assert [line async for line in resp.aiter_lines()] == []  # the watch ends at once
