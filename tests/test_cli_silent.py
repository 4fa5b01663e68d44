"""Nothing silent: dropped Secrets, empty resources, an empty ``--once`` and an empty recording all say so."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tattler_etcd.cli import main
from tests.fake_apiserver import FakeCluster, RunningServer, run_in_thread
from tests.fake_apiserver.objects import make_pod
from tests.support import cli
from tests.support.etcd import EtcdServer, free_port
from tests.support.etcd_reading import key, obj

SECRET = json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {
    "name": "s", "namespace": "default", "uid": "uid-s"}, "data": {"k": "aHVudGVyMg=="}}).encode()
DROPPED_WARNING = "secrets: Secret objects are dropped without --allow-secrets"


@pytest.mark.etcd
def test_secrets_without_allow_secrets_warn_once(etcd: EtcdServer) -> None:
    etcd.put(key("pods", "web", "default"), obj("pods", "web", "default"))
    etcd.put("/registry/secrets/default/s", SECRET)
    url = etcd.url
    done = cli.run("run", "--endpoints", url, "--resources", "secrets,pods", "--once", "--batch-window", "0.05")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(DROPPED_WARNING) == 1
    assert [json.loads(line)["kind"] for line in done.stdout.splitlines()] == ["Pod"]
    allowed = cli.run("run", "--endpoints", url, "--resources", "secrets", "--allow-secrets", "--once",
                      "--batch-window", "0.05")
    assert allowed.returncode == 0 and DROPPED_WARNING not in allowed.stderr
    assert [json.loads(line)["kind"] for line in allowed.stdout.splitlines()] == ["Secret"]
    assert "aHVudGVyMg==" not in allowed.stdout


@pytest.mark.etcd
def test_a_resource_with_no_keys_and_an_empty_once_say_so(etcd: EtcdServer) -> None:
    etcd.put(key("pods", "web", "default"), obj("pods", "web", "default"))
    done = cli.run("run", "--endpoints", etcd.url, "--resources", "pods,nodes", "--once", "--batch-window", "0.05")
    assert done.returncode == 0
    assert "no nodes under /registry/minions/" in done.stderr and "no pods" not in done.stderr
    assert "listed 0 objects" not in done.stderr
    wrong = cli.run("run", "--endpoints", etcd.url, "--prefix", "/kubernetes.io", "--resources", "po", "--once",
                    "--batch-window", "0.05")
    assert wrong.returncode == 0 and wrong.stdout == ""
    assert "no pods under /kubernetes.io/pods/" in wrong.stderr and "(is --prefix right?)" in wrong.stderr
    assert "--once: listed 0 objects (pods)" in wrong.stderr


@pytest.mark.etcd
def test_once_with_everything_dropped_says_why(etcd: EtcdServer, capsys: pytest.CaptureFixture[str]) -> None:
    etcd.put("/registry/secrets/default/s", SECRET)
    assert main(["run", "--endpoints", etcd.url, "--resources", "secrets", "--once", "--batch-window", "0.05"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--once: listed 1 objects and the safety stage dropped every one" in captured.err


def test_record_against_an_endpoint_that_never_answers_fails(tmp_path: Path) -> None:
    out = tmp_path / "rec.yaml"
    port = free_port()  # nothing listens there
    done = cli.run("record", "--endpoints", f"127.0.0.1:{port}", "--to", str(out), "--duration", "1")
    assert done.returncode == 1
    assert f"recorded nothing: http://127.0.0.1:{port} never answered" in done.stderr
    assert not out.exists()


def _empty_nodes() -> FakeCluster:
    c = FakeCluster()
    c.create("pods", make_pod(1))
    return c


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with run_in_thread(_empty_nodes) as srv:
        yield srv


@pytest.mark.filterwarnings(r"ignore:Async generator 'http(x|core)\.[\w.]+' was garbage collected:ResourceWarning")
def test_an_empty_apiserver_resource_warns(server: RunningServer, tmp_path: Path) -> None:
    kc = tmp_path / "kc"
    kc.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "f",
        "clusters": [{"name": "f", "cluster": {"server": server.url}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "f", "context": {"cluster": "f", "user": "u"}}],
    }))
    done = cli.run("run", "--kubeconfig", str(kc), "--resources", "pods,nodes", "--once", "--batch-window", "0.05")
    assert done.returncode == 0, done.stderr
    assert "the server has no nodes" in done.stderr and "has no pods" not in done.stderr
