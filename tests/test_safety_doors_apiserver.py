"""No secret through any door when reading through the APIServer (the fake, in JSON and protobuf).

The same scan as test_safety_doors.py: markers planted in Pods (every
container list, args, annotations, labels, a last-applied that is not JSON),
a Deployment's template, a ConfigMap, a custom resource; and the bearer token
the reader authenticates with. Read back by ``run --once`` (both content
types), ``record`` and a replay of the recording; every output, log and the
cassette scanned.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tattler_etcd.cli import main
from tattler_etcd.pipeline.safety import CONTAINER_LISTS, LAST_APPLIED_ANNOTATION
from tests.fake_apiserver import FakeCluster, RunningServer, run_in_thread
from tests.fake_apiserver.objects import make_pod
from tests.support.kubeconfig import write_kubeconfig
from tests.support.leaks import leaked
from tests.support.pipeline_objects import pod_spec

pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator 'http(x|core)\.[\w.]+' was garbage collected:ResourceWarning"
)

TOKEN = "zqTOKENq-bearer-0123456789"
MARKERS: list[str] = []
RULES = ["Pod:spec.containers[*].args", "ConfigMap:data.*", "widgets.example.com:spec.env[*].value",
         "annotation:example.com/token", "label:example.com/secret"]


def mark(place: str) -> str:
    m = f"zqAPI{len(MARKERS):02d}x{place}Q"
    MARKERS.append(m)
    return m


def cluster() -> FakeCluster:
    MARKERS.clear()
    c = FakeCluster()
    c.token = TOKEN
    pod = make_pod(1)
    spec: dict = {}
    for lst in CONTAINER_LISTS:
        spec.update(pod_spec(mark(f"pod{lst}"), lists=(lst,)))
    spec["containers"][0]["args"] = ["--password", mark("args")]
    pod["spec"].update(spec)
    pod["metadata"]["annotations"] = {"example.com/token": mark("annotation"),
                                      LAST_APPLIED_ANNOTATION: "not json " + mark("applied")}
    pod["metadata"]["labels"] = {"example.com/secret": mark("label")}
    c.create("pods", pod)
    c.create("deployments", {"apiVersion": "apps/v1", "kind": "Deployment",
                             "metadata": {"name": "d", "namespace": "default"},
                             "spec": {"template": {"spec": pod_spec(mark("deploy"))}}})
    c.create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "default"},
                            "data": {"password": mark("configmap")}})
    c.create("widgets", {"apiVersion": "example.com/v1", "kind": "Widget",
                         "metadata": {"name": "w", "namespace": "default"},
                         "spec": {"env": [{"name": "A", "value": mark("widget")}]}})
    return c


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with run_in_thread(cluster) as srv:
        yield srv


def kubeconfig(tmp_path: Path, url: str) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", url, {"token": TOKEN})


def test_nothing_planted_leaves_through_the_apiserver_reader(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = str(kubeconfig(tmp_path, server.url))
    common = ["--kubeconfig", cfg, "--resources", "pods,deployments.apps,configmaps,widgets.example.com",
              *(a for r in RULES for a in ("--redact", r))]
    outputs: dict[str, str | bytes] = {}
    for fmt in ("protobuf", "json"):
        out = tmp_path / f"{fmt}.jsonl"
        assert main(["run", *common, "--content-type", fmt, "--once", "--batch-window", "0.1", "-o", str(out)]) == 0
        outputs[fmt] = out.read_text()
        outputs[f"{fmt} stderr"] = capsys.readouterr().err
    for fmt in ("protobuf", "json"):
        cassette = tmp_path / f"rec-{fmt}.yaml"
        assert main(["record", *common, "--content-type", fmt, "--duration", "0.5", "--out", str(cassette)]) == 0
        outputs[f"cassette {fmt}"] = cassette.read_bytes()
        replayed = tmp_path / f"replayed-{fmt}.jsonl"
        assert main(["run", "--replay", str(cassette), "-o", str(replayed)]) == 0
        outputs[f"replay {fmt}"] = replayed.read_text()
        outputs[f"record {fmt} stderr"] = capsys.readouterr().err
    outputs["logs"] = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)

    assert len(MARKERS) == 10
    assert leaked([*MARKERS, TOKEN], outputs) == {}
    for name in ("protobuf", "json", "replay protobuf", "replay json"):
        text = outputs[name]
        assert isinstance(text, str)
        names = {json.loads(line)["name"] for line in text.splitlines()}
        assert {"pod-00001", "d", "cm", "w"} <= names, name
