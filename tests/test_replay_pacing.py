"""Paced replay: responses and watch lines arrive at their recorded offsets, and batches split where the run did.

Expectations come from the recording's own timing metadata and bodies, never
from numbers written here.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml

from tattler_etcd.data import ChangeType, Entry
from tattler_etcd.pipeline import Runner
from tattler_etcd.pytest_plugin import ReplayHarness
from tattler_etcd.replay import (
    RecordingInfo,
    Timing,
    bundled_recording,
    dump_cassette,
    read_recording,
    replay_into,
)
from tattler_etcd.stats import Counters

BASE = "http://127.0.0.1:2379"


def _load(path: Path) -> tuple[RecordingInfo, list[dict[str, Any]]]:
    try:
        from yaml import CSafeLoader as Loader
    except ImportError:  # pragma: no cover
        from yaml import SafeLoader as Loader  # type: ignore[assignment]
    doc = yaml.load(path.read_text(), Loader=Loader)
    return read_recording(path), doc["interactions"]


def _text(body: Any) -> str:
    return body.decode() if isinstance(body, bytes) else (body or "")


def arrivals(path: Path) -> list[tuple[float, set[str]]]:
    """Every recorded moment that hands entries on: (offset, the resource versions of those entries).

    A range page's entries carry their objects' mod revisions (a relist's
    DELETEs for the vanished, the list's revision); a watch line's carry its
    events' mod revisions.
    """
    info, interactions = _load(path)
    out: list[tuple[float, set[str]]] = []
    for item, timing in zip(interactions, info.timing, strict=True):
        body = _text(item["response"]["body"]["string"])
        uri = item["request"]["uri"]
        if uri.endswith("/kv/range"):
            doc = json.loads(body)
            if doc.get("kvs"):
                asked = json.loads(item["request"]["body"]).get("revision")
                listed = {str(kv["mod_revision"]) for kv in doc["kvs"]}
                out.append((timing.at, listed | {str(asked or doc["header"]["revision"])}))
        elif uri.endswith("/watch"):
            data = body.encode()
            pos = 0
            for offset, size in timing.lines:
                line = json.loads(data[pos:pos + size])
                pos += size
                events = (line.get("result") or {}).get("events") or []
                if events:
                    out.append((offset, {str(ev["kv"]["mod_revision"]) for ev in events}))
    return sorted(out, key=lambda a: a[0])


def expected_batches(points: list[tuple[float, set[str]]], window: float) -> list[set[str]]:
    """What the batcher must make of these arrivals: a batch opens at an arrival and closes ``window`` later."""
    batches: list[set[str]] = []
    closes = -1.0
    for offset, revisions in points:
        # The file's offsets are milliseconds; a replay adds microseconds to keep them apart.
        assert abs(offset - closes) > 0.005, "an arrival sits on a window's edge: pick another window"
        if offset > closes:
            batches.append(set())
            closes = offset + window
        batches[-1] |= revisions
    return batches


@pytest.mark.parametrize("window", [0.3, 1.0, 5.0])
def test_batches_split_where_the_recorded_timing_says(window: float) -> None:
    path = bundled_recording()
    expected = expected_batches(arrivals(path), window)
    assert len(expected) > 1  # the recording's gaps split it, even at the default window
    result = ReplayHarness().run(path, batch_window=window, batch_size=100_000)
    assert len(result.batches) == len(expected)
    for batch, revisions in zip(result.batches, expected, strict=True):
        assert {e.resource_version for e in batch} <= revisions
        assert len(batch) > 0


def test_the_default_window_keeps_the_initial_list_apart_from_the_changes() -> None:
    result = ReplayHarness().run(bundled_recording())
    first = result.batches[0]
    assert {e.change for e in first} == {ChangeType.ADD}
    # Every initial object arrives as an ADD, none of them hidden by a later change in the same batch.
    once = ReplayHarness().run(bundled_recording(), once=True)
    assert [e.uid for e in first] == [e.uid for e in once.entries]


class TimedReader:
    """A reader that asks for a range, then a watch, and notes the virtual time each answer arrives."""

    name = "timed"

    def __init__(self, client: httpx.AsyncClient, start_after: float = 0.0) -> None:
        self.client = client
        self.start_after = start_after
        self.seen: list[tuple[str, float]] = []

    async def run(self, send: trio.MemorySendChannel[list[Entry]], counters: Counters, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with send:
            t0 = trio.current_time()
            await self.client.get(f"{BASE}/version")
            self.seen.append(("version", trio.current_time() - t0))
            await trio.sleep(self.start_after)
            await self.client.post(f"{BASE}/v3/kv/range", content=b'{"key":"AA=="}')
            self.seen.append(("range", trio.current_time() - t0))
            task_status.started()
            async with self.client.stream("POST", f"{BASE}/v3/watch", content=b'{"w":1}') as resp:
                async for line in resp.aiter_lines():
                    self.seen.append((line, trio.current_time() - t0))
            self.seen.append(("end", trio.current_time() - t0))


def _cassette(path: Path) -> RecordingInfo:
    lines = [b'{"a":1}\n', b'{"b":2}\n', b'{"c":3}\n']
    reqs = [("GET", f"{BASE}/version", ""), ("POST", f"{BASE}/v3/kv/range", '{"key":"AA=="}'),
            ("POST", f"{BASE}/v3/watch", '{"w":1}')]
    bodies = ['{"etcdserver":"3.4.0"}', '{"header":{"revision":"1"}}', b"".join(lines).decode()]
    interactions = [({"method": m, "uri": u, "body": b, "headers": {}},
                     {"status": {"code": 200, "message": "OK"}, "headers": {}, "body": {"string": body}})
                    for (m, u, b), body in zip(reqs, bodies, strict=True)]
    timing = (Timing(at=0.01), Timing(at=0.5),
              # Two lines recorded in the same millisecond: they still arrive in body order.
              Timing(at=0.6, lines=((1.0, len(lines[0])), (4.25, len(lines[1])), (4.25, len(lines[2]))), end=6.0))
    info = RecordingInfo(source="etcd", resources=("pods",), endpoint=BASE, timing=timing)
    dump_cassette(path, interactions, info)
    return read_recording(path)


async def _replay_timed(path: Path, start_after: float) -> TimedReader:
    readers: list[TimedReader] = []

    def make(info: RecordingInfo, client: httpx.AsyncClient) -> list[TimedReader]:
        readers.append(TimedReader(client, start_after))
        return readers

    async def ignore(batch: Any) -> None:
        pass

    runner = Runner()
    runner.add_processor("ignore", ignore)
    await replay_into(runner, path, make_readers=make)
    return readers[0]


async def test_each_answer_and_line_arrives_at_its_recorded_offset(tmp_path: Path, autojump_clock: Any) -> None:
    info = _cassette(tmp_path / "c.yaml")
    reader = await _replay_timed(tmp_path / "c.yaml", 0.0)
    names = [n for n, _ in reader.seen]
    assert names == ["version", "range", '{"a":1}', '{"b":2}', '{"c":3}', "end"]
    recorded = [info.timing[0].at, info.timing[1].at, *(t for t, _ in info.timing[2].lines), info.timing[2].end]
    got = [t for _, t in reader.seen]
    assert got == pytest.approx(recorded, abs=1e-4)
    assert got == sorted(got) and len(set(got)) == len(got)  # strictly increasing, ties broken in body order


async def test_an_answer_never_comes_before_its_request(tmp_path: Path, autojump_clock: Any) -> None:
    info = _cassette(tmp_path / "c.yaml")
    late = info.timing[1].at + 2.0  # the range is asked for 2 s after it was answered in the recording
    reader = await _replay_timed(tmp_path / "c.yaml", late)
    seen = dict(reader.seen)
    assert seen["range"] == pytest.approx(info.timing[0].at + late, abs=1e-4)  # at once, not in the past
    assert seen['{"b":2}'] == pytest.approx(info.timing[2].lines[1][0], abs=1e-4)  # later lines keep their time


def test_the_timing_is_in_the_metadata_and_the_interactions_are_vcrpy_s() -> None:
    info, interactions = _load(bundled_recording())
    assert len(info.timing) == len(interactions)
    for item in interactions:
        assert sorted(item) == ["request", "response"]
        assert sorted(item["response"]) == ["body", "headers", "status"]
    watches = [t for t, it in zip(info.timing, interactions, strict=True) if it["request"]["uri"].endswith("/watch")]
    assert watches and all(t.streamed for t in watches)
    assert info.duration == max(dataclasses.astuple(t)[2] or t.at for t in info.timing)
