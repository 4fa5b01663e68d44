"""The deploy files: every manifest field is a real field of its kind, and the pieces agree.

Each manifest is encoded with our own codec, which refuses any field its
kind does not have (the same schema the APIServer stores with); the
container's arguments are parsed by our own CLI parser; the probes ask for
the endpoints ``--metrics-address`` serves; the ClusterRole grants list and
watch on exactly the resources the reader is given.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tattler_etcd import codec
from tattler_etcd.cli import build_parser
from tattler_etcd.errors import EncodeError

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _all() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{p.name}:{d['kind']}/{d['metadata']['name']}", d) for p in MANIFESTS for d in _docs(p)]


def _containers(kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [(name, c) for name, d in _all() if d["kind"] == kind
            for c in d["spec"]["template"]["spec"]["containers"]]


def test_there_are_manifests_for_both_modes() -> None:
    kinds = sorted(name for name, _ in _all())
    assert [p.name for p in MANIFESTS] == ["apiserver-mode.yaml", "etcd-mode.yaml", "namespace.yaml"]
    assert "etcd-mode.yaml:Deployment/tattler-etcd" in kinds
    assert "apiserver-mode.yaml:ClusterRole/tattler-etcd-reader" in kinds


@pytest.mark.parametrize(("name", "doc"), _all(), ids=[n for n, _ in _all()])
def test_every_manifest_encodes_with_our_codec(name: str, doc: dict[str, Any]) -> None:
    value = codec.encode(doc)
    assert value.startswith(b"k8s\0")
    back = codec.decode(value)
    assert (back["kind"], back["metadata"]["name"]) == (doc["kind"], doc["metadata"]["name"])


def test_the_codec_check_would_catch_a_misspelt_field() -> None:
    _, deployment = next((n, d) for n, d in _all() if d["kind"] == "Deployment")
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["pth"] = probe["httpGet"].pop("path")
    with pytest.raises(EncodeError, match=r"pth"):
        codec.encode(deployment)


@pytest.mark.parametrize(("name", "container"), _containers("Deployment"), ids=[n for n, _ in _containers("Deployment")])
def test_each_container_runs_our_cli_with_probes_on_the_metrics_endpoints(name: str, container: dict[str, Any]) -> None:
    args = build_parser().parse_args(container["args"])
    assert args.command == "run"
    port = int(args.metrics_address.rpartition(":")[2])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_etcd_mode_takes_its_client_certificate_from_a_secret() -> None:
    (_, deployment), = [(n, d) for n, d in _all() if n == "etcd-mode.yaml:Deployment/tattler-etcd"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = build_parser().parse_args(container["args"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    secret_volumes = [v for v in pod["volumes"] if "secret" in v]
    assert [v["secret"]["secretName"] for v in secret_volumes] == ["tattler-etcd-client"]
    directory = mounts[secret_volumes[0]["name"]]
    assert (args.cacert, args.cert, args.key) == (f"{directory}/ca.crt", f"{directory}/tls.crt", f"{directory}/tls.key")
    assert all(u.startswith("https://") for u in args.etcd_endpoints.split(","))
    assert pod["automountServiceAccountToken"] is False


def test_apiserver_mode_may_list_and_watch_its_resources_and_nothing_else() -> None:
    docs = dict(_all())
    role = docs["apiserver-mode.yaml:ClusterRole/tattler-etcd-reader"]
    binding = docs["apiserver-mode.yaml:ClusterRoleBinding/tattler-etcd-reader"]
    deployment = docs["apiserver-mode.yaml:Deployment/tattler-apiserver"]
    pod = deployment["spec"]["template"]["spec"]
    args = build_parser().parse_args(pod["containers"][0]["args"])
    assert args.in_cluster
    granted = set()
    for rule in role["rules"]:
        assert sorted(rule["verbs"]) == ["list", "watch"]
        for group in rule["apiGroups"]:
            granted |= {f"{r}.{group}" if group else r for r in rule["resources"]}
    assert granted == set(args.resources.split(","))
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"],
                                    "namespace": deployment["metadata"]["namespace"]}]


def test_services_select_their_deployments_and_expose_the_metrics_port() -> None:
    docs = _all()
    for _, svc in (x for x in docs if x[1]["kind"] == "Service"):
        matches = [d for _, d in docs if d["kind"] == "Deployment"
                   and svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matches) == 1, svc["metadata"]["name"]
        assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["metrics"]


def test_the_dockerfile_runs_the_cli_as_a_non_root_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim\b", text, re.MULTILINE)
    assert re.findall(r"^USER (\S+)$", text, re.MULTILINE) == ["10001"]
    assert re.findall(r"^ENTRYPOINT (.+)$", text, re.MULTILINE) == ['["tattler-etcd"]']
    root = DEPLOY.parent
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for part in src.split():
            assert (root / part).exists(), part
    uids = {d["spec"]["template"]["spec"]["securityContext"]["runAsUser"] for _, d in _all() if d["kind"] == "Deployment"}
    assert uids == {10001}
