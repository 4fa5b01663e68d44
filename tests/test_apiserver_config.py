"""Kubeconfigs (token, client certificate, exec plugin) and in-cluster config, against the fake."""

from __future__ import annotations

import ssl
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tattler_etcd.errors import AccessDeniedError, CertificateVerifyError, ConfigError
from tattler_etcd.readers.apiserver import APIServerReader, load_incluster, load_kubeconfig
from tests.fake_apiserver import FakeCluster, RunningServer, open_fake_apiserver
from tests.fake_apiserver.objects import make_pod
from tests.support.kubeconfig import write_kubeconfig
from tests.support.reading import run_reader


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=fake-ca")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, subj in (("server", "/CN=127.0.0.1"), ("client", "/CN=tattler/O=readers")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", subj)
        extra = ["-extfile", "san.ext"] if name == "server" else []
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", *extra)
    return {p.stem + p.suffix: p for p in d.iterdir()}


async def read_once(config: Any) -> list[str]:
    reader = APIServerReader(["pods"], config=config, once=True, content_type="json")
    with trio.fail_after(30):
        async with run_reader(reader) as h:
            await h.drain()
    return [e.key for e in h.entries]


@pytest.fixture
async def plain() -> AsyncIterator[RunningServer]:
    cluster = FakeCluster()
    cluster.token = "s3cret"
    cluster.create("pods", make_pod(1))
    async with open_fake_apiserver(cluster) as srv:
        yield srv


async def test_token_kubeconfig(plain: RunningServer, tmp_path: Path) -> None:
    cfg = load_kubeconfig(write_kubeconfig(tmp_path / "kc", plain.url, {"token": "s3cret"}))
    assert cfg.authorization == "Bearer s3cret"
    assert await read_once(cfg) == ["pods/default/pod-00001"]


async def test_context_selection(plain: RunningServer, tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kc", plain.url, {"token": "s3cret"}, extra_contexts=True)
    with pytest.raises(AccessDeniedError, match=r"^discovery /apis: 401 Unauthorized"):
        await read_once(load_kubeconfig(path, context="other"))
    assert await read_once(load_kubeconfig(path, context="fake")) == ["pods/default/pod-00001"]


def test_missing_file_and_context(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"^kubeconfig {tmp_path}/nope: no such file$"):
        load_kubeconfig(tmp_path / "nope")
    path = write_kubeconfig(tmp_path / "kc", "https://127.0.0.1:1", {"token": "x"})
    with pytest.raises(ConfigError, match=rf"^kubeconfig {path}, context missing: .*missing.*"):
        load_kubeconfig(path, context="missing")


def exec_plugin(tmp_path: Path, token: str, *, fail: bool = False) -> Path:
    script = tmp_path / "plugin.py"
    status = {"token": token, "expirationTimestamp": "2099-01-01T00:00:00Z"}
    body = ("import sys; sys.stderr.write('no login\\n'); sys.exit(1)" if fail else
            f"import json; print(json.dumps({{'apiVersion': 'client.authentication.k8s.io/v1beta1', "
            f"'kind': 'ExecCredential', 'status': {status!r}}}))")
    script.write_text(f"#!{sys.executable}\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


async def test_exec_plugin(plain: RunningServer, tmp_path: Path) -> None:
    script = exec_plugin(tmp_path, "s3cret")
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(script)}}
    cfg = load_kubeconfig(write_kubeconfig(tmp_path / "kc", plain.url, user))
    assert cfg.authorization == "Bearer s3cret"
    assert await read_once(cfg) == ["pods/default/pod-00001"]


async def test_exec_plugin_token_refreshed_after_a_401(plain: RunningServer, tmp_path: Path) -> None:
    """The plugin hands out tok-1, then tok-2 (expiring soon, so the loader re-runs it when asked)."""
    counter = tmp_path / "count"
    counter.write_text("0")
    script = tmp_path / "plugin.py"
    script.write_text(
        f"#!{sys.executable}\n"
        "import datetime, json, pathlib\n"
        f"p = pathlib.Path({str(counter)!r}); n = int(p.read_text()) + 1; p.write_text(str(n))\n"
        "exp = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=2))"
        ".strftime('%Y-%m-%dT%H:%M:%SZ')\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1', 'kind': 'ExecCredential',"
        " 'status': {'token': f'tok-{n}', 'expirationTimestamp': exp}}))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(script)}}
    cfg = load_kubeconfig(write_kubeconfig(tmp_path / "kc", plain.url, user))
    assert cfg.authorization == "Bearer tok-1"
    plain.cluster.token = "tok-2"  # the server moved on: tok-1 now gets a 401
    assert await read_once(cfg) == ["pods/default/pod-00001"]
    assert cfg.authorization == "Bearer tok-2"
    assert counter.read_text() == "2"


def test_exec_plugin_that_fails(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    script = exec_plugin(tmp_path, "", fail=True)
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(script)}}
    path = write_kubeconfig(tmp_path / "kc", "https://127.0.0.1:1", user)
    with pytest.raises(ConfigError, match=rf"^kubeconfig {path}: the exec credential plugin gave no credentials"):
        load_kubeconfig(path)


@pytest.fixture
async def tls(pki: dict[str, Path]) -> AsyncIterator[RunningServer]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca.crt"]))
    ctx.load_cert_chain(pki["server.crt"], pki["server.key"])
    ctx.verify_mode = ssl.CERT_REQUIRED  # client certificates only
    cluster = FakeCluster()
    cluster.create("pods", make_pod(1))
    async with open_fake_apiserver(cluster, ssl_context=ctx) as srv:
        yield srv


async def test_client_certificate_kubeconfig(tls: RunningServer, pki: dict[str, Path], tmp_path: Path) -> None:
    user = {"client-certificate": str(pki["client.crt"]), "client-key": str(pki["client.key"])}
    cfg = load_kubeconfig(write_kubeconfig(tmp_path / "kc", tls.url, user,
                                           cluster={"certificate-authority": str(pki["ca.crt"])}))
    assert tls.url.startswith("https://")
    assert await read_once(cfg) == ["pods/default/pod-00001"]


async def test_tls_is_verified_unless_the_kubeconfig_says_otherwise(tls: RunningServer, pki: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    user = {"client-certificate": str(pki["client.crt"]), "client-key": str(pki["client.key"])}
    # No CA given: the system store does not know the fake's CA; that is permanent, never retried.
    cfg = load_kubeconfig(write_kubeconfig(tmp_path / "kc", tls.url, user))
    reader = APIServerReader(["pods"], config=cfg, once=True,
                             backoff_factory=lambda: _one_try())
    with trio.fail_after(30), pytest.raises(CertificateVerifyError, match="certificate verify failed: "):
        async with run_reader(reader):
            pass
    cfg = load_kubeconfig(write_kubeconfig(tmp_path / "kc2", tls.url, user,
                                           cluster={"insecure-skip-tls-verify": True}))
    assert await read_once(cfg) == ["pods/default/pod-00001"]


class _GaveUp(Exception):
    pass


def _one_try() -> Any:
    class B:
        def next_delay(self, now: float) -> float:
            raise _GaveUp

        def reset(self) -> None:
            pass

    return B()


async def test_in_cluster(plain: RunningServer, tmp_path: Path, pki: dict[str, Path]) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret")
    host, port = plain.url.removeprefix("http://").split(":")
    cfg = load_incluster(token_file=str(token), ca_file=str(pki["ca.crt"]),
                         environ={"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port})
    assert cfg.server == plain.url.replace("http://", "https://")
    assert cfg.authorization == "bearer s3cret"


def test_in_cluster_outside_a_pod() -> None:
    with pytest.raises(ConfigError, match=r"^in-cluster config: Service host/port is not set\.$"):
        load_incluster(environ={})

