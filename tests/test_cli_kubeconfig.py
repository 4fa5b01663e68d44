"""kubeconfig found as kubectl finds it: ``~`` expanded, ``KUBECONFIG`` lists merged, no silent fallback.

Against the fake APIServer (a real socket in a thread), through the installed
console script where it matters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tattler_etcd.errors import ConfigError
from tattler_etcd.readers.apiserver import load_kubeconfig
from tests.fake_apiserver import FakeCluster, RunningServer, run_in_thread
from tests.fake_apiserver.objects import make_pod
from tests.support import cli

pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator 'http(x|core)\.[\w.]+' was garbage collected:ResourceWarning"
)

DEAD = "http://127.0.0.1:1"


def cluster() -> FakeCluster:
    c = FakeCluster()
    c.token = "t0ken"
    for i in range(2):
        c.create("pods", make_pod(i))
    return c


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with run_in_thread(cluster) as srv:
        yield srv


def write(path: Path, *, clusters: dict[str, str] = {}, contexts: dict[str, str] = {},  # noqa: B006
          current: str | None = None, user: bool = False) -> Path:
    doc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": url}} for n, url in clusters.items()],
        "contexts": [{"name": n, "context": {"cluster": c, "user": "u"}} for n, c in contexts.items()],
        "users": [{"name": "u", "user": {"token": "t0ken"}}] if user else [],
    }
    if current:
        doc["current-context"] = current
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def _pods(stdout: str) -> list[str]:
    return sorted(json.loads(line)["name"] for line in stdout.splitlines())


def test_tilde_is_expanded_in_the_flag_and_in_load_kubeconfig(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(tmp_path / ".kube" / "alt", clusters={"c": server.url}, contexts={"x": "c"}, current="x", user=True)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_kubeconfig("~/.kube/alt").server == server.url
    done = cli.run("run", "--kubeconfig", "~/.kube/alt", "--resources", "po", "--once", "--batch-window", "0.05")
    assert done.returncode == 0, done.stderr
    assert _pods(done.stdout) == ["pod-00000", "pod-00001"]


def test_kubeconfig_list_is_merged_as_kubectl_merges_it(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = write(tmp_path / "a", clusters={"shared": server.url, "bad": DEAD}, contexts={"ctx-a": "bad"}, user=True)
    # "shared" again (the first file's wins), and the first current-context set anywhere.
    b = write(tmp_path / "b", clusters={"shared": DEAD}, contexts={"ctx-b": "shared"}, current="ctx-b")
    c = write(tmp_path / "c", current="ctx-a")  # a later current-context loses
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("KUBECONFIG", f"{a}::{tmp_path / 'missing'}:{empty}:{b}:{c}")
    cfg = load_kubeconfig()
    assert cfg.server == server.url and cfg.authorization == "Bearer t0ken"
    assert load_kubeconfig(context="ctx-a").server == DEAD
    # The CLI reads the same merge, with KUBECONFIG alone naming the source (no bundled fallback).
    done = cli.run("run", "--resources", "pods", "--once", "--batch-window", "0.05")
    assert done.returncode == 0, done.stderr
    assert _pods(done.stdout) == ["pod-00000", "pod-00001"] and "bundled" not in done.stderr


def test_kubeconfig_or_context_never_falls_back_to_the_bundled_recording(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = cli.run("run", "--once", env={"KUBECONFIG": str(tmp_path / "nope")})
    assert missing.returncode == 2 and missing.stdout == ""
    assert f"kubeconfig {tmp_path / 'nope'}: no such file" in missing.stderr and "bundled" not in missing.stderr
    context = cli.run("run", "--context", "prod", "--once", env={"HOME": str(tmp_path)})
    assert context.returncode == 2 and context.stdout == ""
    assert f"kubeconfig {tmp_path}/.kube/config, context prod: no such file" in context.stderr
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="no such file"):
        load_kubeconfig()


def test_with_nothing_given_the_bundled_replay_says_how_to_read_a_cluster() -> None:
    done = cli.run("run", "--once")
    assert done.returncode == 0 and done.stdout.count("\n") > 10
    assert "no source given: replaying the bundled recording" in done.stderr
    assert "to read a real cluster give --endpoints HOST:PORT (etcd) or --kubeconfig PATH" in done.stderr
