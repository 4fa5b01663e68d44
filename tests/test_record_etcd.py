"""Recording a real EtcdReader run against a real etcd, and replaying it."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import trio

from tattler_etcd import codec
from tattler_etcd.cli import main
from tattler_etcd.pytest_plugin import ReplayHarness
from tattler_etcd.replay import bundled_recording, read_recording
from tests.support.etcd import EtcdServer
from tests.test_replay_bundled import assert_no_secret
from tools.make_recording import PLANTED_SECRET, Cluster, record_scenario

pytestmark = pytest.mark.etcd


def replayed_entries(path: Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    result = ReplayHarness().run(path, batch_size=1)
    return [e.to_json_dict() for e in result.entries], result.counters


def test_re_recording_the_bundled_scenario_gives_the_same_entries(
    etcd: EtcdServer, tmp_path: Path, testdata: Path,
) -> None:
    out = tmp_path / "again.yaml"
    # Short gaps: the same writes in the same order, in a second or two instead of the bundled file's ~18 s.
    info = trio.run(functools.partial(record_scenario, etcd, out, testdata, gap=0.4, spacing=0.02))
    assert info.stopped_by == "events" and info.watch_events == read_recording(bundled_recording()).watch_events
    # The secret really was in etcd, and never reached the file.
    stored = etcd.range_prefix("/registry/pods/shop/")
    assert any(PLANTED_SECRET.encode() in kv["value"] for kv in stored)
    assert_no_secret(out, PLANTED_SECRET)

    again, counters = replayed_entries(out)
    bundled, _ = replayed_entries(bundled_recording())
    # Each resource's entries in the same order (one stream each); across
    # resources the order is the recorded arrival order, which real time decides.
    for kind in ("Pod", "Node", "Namespace", "PersistentVolume"):
        assert [e for e in again if e["kind"] == kind] == [e for e in bundled if e["kind"] == kind]
    assert len(again) == len(bundled)
    # The held watches (pods, volumes) were compacted away; nodes and namespaces watched on.
    assert counters["reader.etcd.expired"] == 2
    changes = {e["change"] for e in again}
    assert changes == {"add", "update", "delete", "snapshot"}


def test_record_cli_then_replay(etcd: EtcdServer, tmp_path: Path, testdata: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    c = Cluster(testdata)
    etcd.put(*_encoded(c.make("Namespace", "default")))
    etcd.put(*_encoded(c.make("Node", "node-z9")))
    etcd.put(*_encoded(c.secret_pod()))
    out = tmp_path / "cli.yaml"
    assert main(["record", "--etcd-endpoints", etcd.url, "--out", str(out), "--duration", "0.5"]) == 0
    assert f"to {out}" in capsys.readouterr().err
    info = read_recording(out)
    assert info.stopped_by == "duration" and info.endpoint == etcd.url
    assert_no_secret(out, PLANTED_SECRET)

    etcd.close()  # the replay needs no etcd
    jsonl = tmp_path / "out.jsonl"
    assert main(["run", "--replay", str(out), "-o", str(jsonl)]) == 0
    docs = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert sorted((d["change"], d["kind"], d["name"]) for d in docs) == [
        ("add", "Namespace", "default"), ("add", "Node", "node-z9"), ("add", "Pod", "billing-api-5c7d9-qx2vd"),
    ]
    assert PLANTED_SECRET not in jsonl.read_text()


def test_record_needs_a_limit(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["record", "--etcd-endpoints", "http://127.0.0.1:1", "--out", str(tmp_path / "x.yaml")]) == 2
    assert "give --duration S or --events N" in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()


def test_a_failed_recording_writes_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never.yaml"
    assert main(["record", "--etcd-endpoints", "http://127.0.0.1:2379,http://127.0.0.1:2380",
                 "--out", str(out), "--events", "1"]) == 2
    assert "give one endpoint" in capsys.readouterr().err
    assert not out.exists()


def _encoded(item: tuple[str, dict[str, Any]]) -> tuple[str, bytes]:
    key, obj = item
    return key, codec.encode(obj)
