"""Recording the APIServer reader (JSON) against the fake APIServer, and replaying it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
import yaml

from tattler_etcd.pytest_plugin import ReplayHarness
from tattler_etcd.readers.apiserver import ClusterConfig
from tattler_etcd.replay import (
    Recorder,
    is_watch_request,
    read_recording,
    scrub_served_object,
    scrub_stored_value,
)
from tattler_etcd.replay._record import record_apiserver
from tests.fake_apiserver import FakeCluster, open_fake_apiserver
from tests.fake_apiserver.objects import make_pod
from tests.support.kubeconfig import write_kubeconfig

SECRET = "apiserver-env-secret-91c2"
TOKEN = "bearer-token-that-must-not-be-written"
RESOURCES = ("pods", "nodes")


def cluster() -> FakeCluster:
    c = FakeCluster()
    c.token = TOKEN
    for i in range(3):
        c.create("pods", make_pod(i))
    c.create("nodes", {"metadata": {"name": "node-1"}, "spec": {}})
    return c


def with_secret(pod: dict[str, Any]) -> dict[str, Any]:
    pod["spec"]["containers"][0]["env"].append({"name": "API_KEY", "value": SECRET})
    return pod


async def scenario(out: Path, watch_list: bool, content_type: str = "json") -> Any:
    c = cluster()
    async with open_fake_apiserver(c) as server:
        config = ClusterConfig(server=server.url, authorization=f"Bearer {TOKEN}")
        recorder = Recorder(scrub_value=scrub_stored_value, scrub_object=scrub_served_object, max_events=3)
        gate = None if watch_list else recorder.hold(is_watch_request)
        box: dict[str, Any] = {}

        async def record() -> None:
            box["info"] = await record_apiserver(out, config=config, resources=RESOURCES, watch_list=watch_list,
                                                 content_type=content_type, recorder=recorder)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(record)
                if gate is not None:
                    await gate.wait_held(len(RESOURCES))  # both listed; the watches (from the list's rv) wait
                    gate.release()
                else:
                    await recorder.wait_initial_states(len(RESOURCES))  # both WatchLists past their state
                c.update("pods", with_secret(make_pod(1)))
                c.delete("pods", "pod-00002")
                c.create("pods", with_secret(make_pod(7)))
    return box["info"]


@pytest.mark.parametrize("content_type", ["json", "protobuf"])
@pytest.mark.parametrize("watch_list", [False, True])
def test_record_then_replay_the_apiserver_reader(tmp_path: Path, watch_list: bool, content_type: str) -> None:
    out = tmp_path / "api.yaml"
    info = trio.run(scenario, out, watch_list, content_type)
    assert info.source == "apiserver" and info.stopped_by == "events" and info.watch_events == 3
    assert read_recording(out).options["content_type"] == content_type
    text = out.read_bytes()
    assert TOKEN.encode() not in text
    if content_type == "protobuf":
        # Protobuf bodies are stored as YAML !!binary: search the bytes vcrpy would play.
        doc = yaml.safe_load(text)
        text = b"".join(b if isinstance(b := i["response"]["body"]["string"], bytes) else b.encode()
                        for i in doc["interactions"])
        assert b"k8s\x00" in text
    assert SECRET.encode() not in text
    assert b"API_KEY" in text  # the names stay

    # No server now: the replay is answered from the file alone, the same way twice.
    runs = [ReplayHarness().run(out, batch_size=1) for _ in range(2)]
    seen = [[(e.change.value, e.kind, e.name) for e in r.entries] for r in runs]
    assert seen[0] == seen[1]
    assert seen[0][-3:] == [("update", "Pod", "pod-00001"), ("delete", "Pod", "pod-00002"),
                            ("add", "Pod", "pod-00007")]
    assert sorted(x for x in seen[0] if x[0] == "add")[:4] == [
        ("add", "Node", "node-1"), ("add", "Pod", "pod-00000"), ("add", "Pod", "pod-00001"),
        ("add", "Pod", "pod-00002")]
    dumped = json.dumps([e.to_json_dict() for e in runs[0].entries])
    assert SECRET not in dumped


def test_record_cli_with_a_kubeconfig_then_replay(tmp_path: Path) -> None:
    from tattler_etcd.cli import main
    from tests.fake_apiserver import run_in_thread

    out = tmp_path / "cli.yaml"
    with run_in_thread(cluster) as server:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url, {"token": TOKEN})
        rc = main(["record", "--kubeconfig", str(kubeconfig), "--resources", "pods,nodes",
                   "--out", str(out), "--duration", "0.5"])
    assert rc == 0
    assert TOKEN.encode() not in out.read_bytes()
    jsonl = tmp_path / "out.jsonl"
    assert main(["run", "--replay", str(out), "-o", str(jsonl)]) == 0
    docs = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert sorted((d["change"], d["source"], d["name"]) for d in docs) == [
        ("add", "apiserver", "node-1"), ("add", "apiserver", "pod-00000"), ("add", "apiserver", "pod-00001"),
        ("add", "apiserver", "pod-00002"),
    ]


def test_record_cli_wants_exactly_one_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tattler_etcd.cli import main

    assert main(["record", "--out", str(tmp_path / "x.yaml"), "--events", "1"]) == 2
    assert "give one source" in capsys.readouterr().err
