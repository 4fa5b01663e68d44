"""``tattler-etcd run --kubeconfig ...`` against the fake APIServer (run in its own thread)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tattler_etcd.cli import main
from tests.fake_apiserver import FakeCluster, RunningServer, run_in_thread
from tests.fake_apiserver.objects import make_pod, make_widget
from tests.support.kubeconfig import write_kubeconfig


def cluster() -> FakeCluster:
    c = FakeCluster()
    c.token = "t0ken"
    for i in range(3):
        c.create("pods", make_pod(i))
    c.create("widgets", make_widget(1))
    c.create("nodes", {"metadata": {"name": "n1"}})
    return c


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with run_in_thread(cluster) as srv:
        yield srv


def kubeconfig(tmp_path: Path, url: str) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", url, {"token": "t0ken"})


@pytest.mark.parametrize("fmt", ["protobuf", "json"])
def test_run_once_prints_json_lines(server: RunningServer, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out.jsonl"
    rc = main(["run", "--kubeconfig", str(kubeconfig(tmp_path, server.url)), "--context", "fake",
               "--resources", "pods,nodes,widgets.example.com", "--content-type", fmt, "--once",
               "--batch-window", "0.1", "-o", str(out)])
    assert rc == 0
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((d["change"], d["source"], d["kind"], d["name"]) for d in docs) == [
        ("add", "apiserver", "Node", "n1"),
        ("add", "apiserver", "Pod", "pod-00000"), ("add", "apiserver", "Pod", "pod-00001"),
        ("add", "apiserver", "Pod", "pod-00002"), ("add", "apiserver", "Widget", "widget-1"),
    ]
    pod = next(d for d in docs if d["name"] == "pod-00001")
    served = server.call(server.cluster.get, "pods", "pod-00001")
    assert pod["object"]["spec"]["containers"][0]["image"] == served["spec"]["containers"][0]["image"]
    assert pod["resourceVersion"] == served["metadata"]["resourceVersion"]
    accepts = {h["accept"] for (_m, p, _q, h) in server.cluster.requests if p == "/api/v1/pods"}
    assert accepts == ({"application/vnd.kubernetes.protobuf, application/json"} if fmt == "protobuf"
                       else {"application/json"})


def test_bookmark_file_is_written(server: RunningServer, tmp_path: Path) -> None:
    out, marks = tmp_path / "out.jsonl", tmp_path / "marks.json"
    rc = main(["run", "--kubeconfig", str(kubeconfig(tmp_path, server.url)), "--resources", "pods",
               "--once", "--bookmark-file", str(marks), "--batch-window", "0.1", "-o", str(out)])
    assert rc == 0
    assert json.loads(marks.read_text()) == {"pods": str(server.cluster.rv)}


def test_forbidden_is_a_clear_error(server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server.call(server.cluster.forbidden.add, "nodes")
    rc = main(["run", "--kubeconfig", str(kubeconfig(tmp_path, server.url)), "--resources", "nodes",
               "--once", "-o", str(tmp_path / "out.jsonl")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    # the first request is a streaming WatchList, so the refusal names the watch
    assert err.startswith('tattler-etcd: error: watch nodes: 403 Forbidden: nodes is forbidden: User ')
    assert err.endswith("(the account may not do this (check RBAC))")


def test_bad_context(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = kubeconfig(tmp_path, "http://127.0.0.1:1")
    rc = main(["run", "--kubeconfig", str(path), "--context", "nope", "--once"])
    assert rc == 2
    assert capsys.readouterr().err.startswith(f"tattler-etcd: error: kubeconfig {path}, context nope: ")
