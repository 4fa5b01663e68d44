"""Resource names as kubectl takes them: plural, singular, short names, kinds, any case, "did you mean"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tattler_etcd.cli import main
from tattler_etcd.cli._resources import KINDS, SHORT_NAMES, canonical_resource, canonical_resources
from tattler_etcd import codec
from tattler_etcd.errors import ConfigError
from tattler_etcd.readers.etcd.keys import BUILTIN_RESOURCES
from tests.support import cli


@pytest.mark.parametrize(("word", "name"), [
    ("pods", "pods"), ("pod", "pods"), ("po", "pods"), ("Pod", "pods"), ("PODS", "pods"),
    ("no", "nodes"), ("Node", "nodes"), ("ns", "namespaces"), ("pv", "persistentvolumes"),
    ("pvc", "persistentvolumeclaims"), ("deploy", "deployments"), ("Deployment", "deployments"),
    ("deployment.apps", "deployments"), ("Deployments.apps", "deployments"), ("apps/deployments", "deployments"),
    ("sts", "statefulsets"), ("ds", "daemonsets"), ("rs", "replicasets"), ("cj", "cronjobs"), ("cm", "configmaps"),
    ("svc", "services"), ("ep", "endpoints"), ("Endpoints", "endpoints"), ("ing", "ingresses"),
    ("Ingress.networking.k8s.io", "ingresses"), ("netpol", "networkpolicies"), ("crd", "customresourcedefinitions"),
    ("CustomResourceDefinition", "customresourcedefinitions"), ("hpa", "horizontalpodautoscalers"),
    ("events.events.k8s.io", "events.events.k8s.io"), ("ev", "events"), ("pods.core", "pods"),
    ("Widgets.Example.com", "widgets.example.com"), ("example.com/widgets", "widgets.example.com"),
])
def test_kubectl_names(word: str, name: str) -> None:
    assert canonical_resource(word) == name


def test_each_resource_is_named_once() -> None:
    assert canonical_resources(["po", "pods", "Pod", "no"]) == ["pods", "nodes"]


@pytest.mark.parametrize(("word", "hint"), [
    ("pdos", "did you mean pods?"),
    ("deploymnet", "did you mean deployments"),
    ("nodez", "did you mean nodes or csinodes?"),
    ("widgets", "name a custom resource as plural.group"),
])
def test_a_typo_gets_did_you_mean(word: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=rf"^resource '{word}': no built-in resource is called that") as exc:
        canonical_resource(word)
    assert hint in str(exc.value)


def test_every_builtin_has_a_kind_the_codec_knows() -> None:
    plurals = {plural for (_, plural) in BUILTIN_RESOURCES}
    assert plurals == set(KINDS)
    assert set(SHORT_NAMES.values()) <= plurals
    # The codec's generated schema names every message "<proto package>.<Kind>".
    text = (Path(codec.__file__).parent / "_generated" / "schema.json").read_text()
    # APIServices and CRDs are stored as JSON (their servers have no protobuf for them).
    json_stored = {"APIService", "CustomResourceDefinition"}
    missing = [k for k in KINDS.values() if f'.{k}"' not in text and k not in json_stored]
    assert not missing, f"kinds the codec's schema does not name: {missing}"


def test_the_cli_takes_short_names_and_suggests_on_a_typo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.jsonl"
    # The bundled recording holds pods, nodes, namespaces, persistentvolumes: named any kubectl way.
    assert main(["run", "--resources", "PV,no,Namespace,po", "--once", "--to", str(out)]) == 0
    kinds = {json.loads(line)["kind"] for line in out.read_text().splitlines()}
    assert kinds == {"Pod", "Node", "Namespace", "PersistentVolume"}
    done = cli.run("run", "--resources", "pods,nods", "--once")
    assert done.returncode == 2 and done.stdout == ""
    assert "resource 'nods': no built-in resource is called that; did you mean nodes" in done.stderr


def test_consume_takes_the_same_names(capsys: pytest.CaptureFixture[str]) -> None:
    # Checked before any connection (nothing listens on port 1).
    assert main(["consume", "nats://127.0.0.1:1", "--resources", "po,nods", "--once"]) == 2
    assert "resource 'nods': no built-in resource is called that; did you mean nodes" in capsys.readouterr().err
