"""etcd's flags as etcdctl spells them, against real etcd processes.

``--endpoints`` (alias ``--etcd-endpoints``) with ``host:port`` and no scheme,
``ETCDCTL_*`` variables, ``--user NAME[:PASSWORD]`` against an etcd with
authentication on and a read-only role, ``--insecure-skip-tls-verify``.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import pty
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tattler_etcd.cli import main
from tattler_etcd.cli._common import apply_environment, choose_source, etcd_credentials, etcd_endpoints
from tattler_etcd.errors import AccessDeniedError, ConfigError
from tattler_etcd.readers.etcd import EtcdReader
from tattler_etcd.readers.etcd.gateway import EtcdAuth
from tests.support import cli
from tests.support.etcd import EtcdServer
from tests.support.etcd_reading import Tracker, key, obj

pytestmark = pytest.mark.etcd

READER, READER_PASSWORD = "reader", "s3cret-pw"
ROOT_PASSWORD = "root-pw"


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _hostport(server: EtcdServer) -> str:
    return server.url.split("://", 1)[1]


def _names(stdout: str) -> list[str]:
    return sorted(json.loads(line)["name"] for line in stdout.splitlines())


def _call(server: EtcdServer, path: str, body: dict[str, Any], token: str | None = None) -> httpx.Response:
    headers = {"Authorization": token} if token else {}
    return httpx.post(server.url + path, json=body, headers=headers, timeout=10)


def root_token(server: EtcdServer) -> str:
    r = _call(server, "/v3/auth/authenticate", {"name": "root", "password": ROOT_PASSWORD})
    r.raise_for_status()
    return str(r.json()["token"])


def enable_auth(server: EtcdServer) -> None:
    """A root user, and ``reader`` with a role that may only read ``/registry/``; then auth on."""
    for path, body in [
        ("/v3/auth/user/add", {"name": "root", "password": ROOT_PASSWORD}),
        ("/v3/auth/role/add", {"name": "root"}),
        ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
        ("/v3/auth/user/add", {"name": READER, "password": READER_PASSWORD}),
        ("/v3/auth/role/add", {"name": "registry-ro"}),
        ("/v3/auth/role/grant", {"name": "registry-ro", "perm": {
            "permType": "READ", "key": _b64(b"/registry/"), "range_end": _b64(b"/registry0")}}),
        ("/v3/auth/user/grant", {"user": READER, "role": "registry-ro"}),
        ("/v3/auth/enable", {}),
    ]:
        server.call(path, body)


@pytest.fixture
def auth_etcd(etcd: EtcdServer) -> EtcdServer:
    etcd.put(key("pods", "web", "default"), obj("pods", "web", "default"))
    etcd.put(key("pods", "db", "default"), obj("pods", "db", "default"))
    enable_auth(etcd)
    # The role really is read-only, and reading really needs a token.
    assert _call(etcd, "/v3/kv/range", {"key": _b64(b"/registry/")}).status_code == 400
    return etcd


# -- endpoints and the environment ------------------------------------------------------------


def test_endpoints_take_host_port_without_a_scheme(etcd: EtcdServer, tmp_path: Path) -> None:
    etcd.put(key("pods", "web", "default"), obj("pods", "web", "default"))
    done = cli.run("run", "--endpoints", _hostport(etcd), "--resources", "pods", "--once", "--batch-window", "0.05")
    assert done.returncode == 0, done.stderr
    assert _names(done.stdout) == ["web"]
    # The old spelling is the same flag.
    out = tmp_path / "o.jsonl"
    assert main(["run", "--etcd-endpoints", _hostport(etcd), "--resources", "pods", "--once",
                 "--batch-window", "0.05", "--to", str(out)]) == 0
    assert [json.loads(line)["name"] for line in out.read_text().splitlines()] == ["web"]


def test_etcdctl_endpoints_from_the_environment_is_the_source(etcd: EtcdServer) -> None:
    etcd.put(key("pods", "web", "default"), obj("pods", "web", "default"))
    done = cli.run("run", "--resources", "pods", "--once", "--batch-window", "0.05",
                   env={"ETCDCTL_ENDPOINTS": _hostport(etcd)})
    assert done.returncode == 0, done.stderr
    assert _names(done.stdout) == ["web"] and "bundled recording" not in done.stderr


def _ns(**kw: Any) -> argparse.Namespace:
    base: dict[str, Any] = {"etcd_endpoints": None, "kubeconfig": None, "context": None, "in_cluster": False,
                            "replay": None, "cacert": None, "cert": None, "key": None, "user": None,
                            "insecure_skip_tls_verify": False}
    base.update(kw)
    return argparse.Namespace(**base)


def test_scheme_is_https_when_tls_flags_are_given() -> None:
    assert etcd_endpoints(_ns(etcd_endpoints="a:2379, b:2379")) == "http://a:2379,http://b:2379"
    assert etcd_endpoints(_ns(etcd_endpoints="a:2379", cacert="ca.pem")) == "https://a:2379"
    assert etcd_endpoints(_ns(etcd_endpoints="a:2379", insecure_skip_tls_verify=True)) == "https://a:2379"
    assert etcd_endpoints(_ns(etcd_endpoints="http://a:2379", cacert="ca.pem")) == "http://a:2379"
    with pytest.raises(ConfigError, match="--endpoints: give at least one endpoint"):
        etcd_endpoints(_ns(etcd_endpoints=" , "))


def test_etcdctl_variables_fill_flags_not_given() -> None:
    env = {"ETCDCTL_ENDPOINTS": "e:1", "ETCDCTL_CACERT": "ca", "ETCDCTL_CERT": "c", "ETCDCTL_KEY": "k",
           "ETCDCTL_USER": "u:p", "ETCDCTL_INSECURE_SKIP_TLS_VERIFY": "true"}
    args = _ns(cacert="mine")
    apply_environment(args, env)
    assert (args.etcd_endpoints, args.cacert, args.cert, args.key, args.user, args.insecure_skip_tls_verify) == (
        "e:1", "mine", "c", "k", "u:p", True)


def test_the_source_is_chosen_from_flags_then_the_environment() -> None:
    assert choose_source(_ns(), {}) == "none"
    assert choose_source(_ns(), {"KUBECONFIG": "/k"}) == "apiserver"
    assert choose_source(_ns(context="prod"), {}) == "apiserver"
    args = _ns()
    assert choose_source(args, {"ETCDCTL_ENDPOINTS": "e:1"}) == "etcd" and args.etcd_endpoints == "e:1"
    assert choose_source(_ns(etcd_endpoints="x:1"), {"KUBECONFIG": "/k"}) == "etcd"  # a flag wins
    with pytest.raises(ConfigError, match="both ETCDCTL_ENDPOINTS and KUBECONFIG are set"):
        choose_source(_ns(), {"KUBECONFIG": "/k", "ETCDCTL_ENDPOINTS": "e:1"})


# -- --user ---------------------------------------------------------------------------------


def test_user_with_a_read_only_role_reads_over_the_cli(auth_etcd: EtcdServer) -> None:
    done = cli.run("run", "--endpoints", _hostport(auth_etcd), "--user", f"{READER}:{READER_PASSWORD}",
                   "--resources", "pods", "--once", "--batch-window", "0.05")
    assert done.returncode == 0, done.stderr
    assert _names(done.stdout) == ["db", "web"]
    assert READER_PASSWORD not in done.stderr


def test_user_password_from_etcdctl_password(auth_etcd: EtcdServer) -> None:
    done = cli.run("run", "--endpoints", _hostport(auth_etcd), "--resources", "pods", "--once",
                   "--batch-window", "0.05", env={"ETCDCTL_USER": READER, "ETCDCTL_PASSWORD": READER_PASSWORD})
    assert done.returncode == 0, done.stderr
    assert _names(done.stdout) == ["db", "web"]


def test_a_wrong_password_or_no_user_is_a_clear_error(auth_etcd: EtcdServer) -> None:
    wrong = cli.run("run", "--endpoints", _hostport(auth_etcd), "--user", f"{READER}:nope", "--once")
    assert wrong.returncode == 2
    assert f"--user {READER}: authentication failed (wrong name or password)" in wrong.stderr
    assert "nope" not in wrong.stderr.replace(f"{READER}:nope", "")
    nobody = cli.run("run", "--endpoints", _hostport(auth_etcd), "--once")
    assert nobody.returncode == 2
    assert "etcd has authentication enabled: give --user NAME" in nobody.stderr


def test_user_without_password_and_no_terminal_is_an_error() -> None:
    args = _ns(user="reader")
    with pytest.raises(ConfigError, match=r"--user reader: no password: give --user reader:PASSWORD, "
                                          r"set ETCDCTL_PASSWORD, or run on a terminal"):
        etcd_credentials(args, stdin=io.StringIO(""), environ={})
    assert etcd_credentials(_ns(user="a:b:c"), environ={}) == ("a", "b:c")
    assert etcd_credentials(_ns(user="a"), environ={"ETCDCTL_PASSWORD": "pw"}) == ("a", "pw")
    done = cli.run("run", "--endpoints", "127.0.0.1:1", "--user", "reader", "--once", input="")
    assert done.returncode == 2 and "no password" in done.stderr


def test_user_without_password_on_a_terminal_is_asked(auth_etcd: EtcdServer) -> None:
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            [cli.exe(), "run", "--endpoints", _hostport(auth_etcd), "--user", READER, "--resources", "pods",
             "--once", "--batch-window", "0.05"],
            stdin=secondary, stdout=subprocess.PIPE, stderr=secondary, start_new_session=True,
        )
        os.close(secondary)
        seen = b""
        while b"Password for etcd user reader: " not in seen:
            chunk = os.read(primary, 1024)
            assert chunk, f"the prompt never came: {seen!r}"
            seen += chunk
        os.write(primary, READER_PASSWORD.encode() + b"\n")
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(primary)
    assert proc.returncode == 0
    assert _names(out.decode()) == ["db", "web"]


async def test_the_reader_watches_with_the_token_and_renews_it(auth_etcd: EtcdServer) -> None:
    reader = EtcdReader(auth_etcd.url, resources=["pods"], user=READER, password=READER_PASSWORD)
    tracker = Tracker()
    from tattler_etcd.stats import Counters

    send, recv = trio.open_memory_channel[list[Any]](0)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracker.consume, recv)
            nursery.start_soon(reader.run, send, Counters())
            await tracker.wait_for(lambda: len(tracker.state) == 2)
            token = root_token(auth_etcd)
            put = {"key": _b64(key("pods", "new", "default").encode()),
                   "value": _b64(obj("pods", "new", "default"))}
            assert _call(auth_etcd, "/v3/kv/put", put, token).status_code == 200
            await tracker.wait_for(lambda: key("pods", "new", "default") in tracker.state)
            nursery.cancel_scope.cancel()


async def test_auth_fetches_a_new_token_after_a_401(auth_etcd: EtcdServer) -> None:
    auth = EtcdAuth(READER, READER_PASSWORD)
    body = {"key": _b64(b"/registry/"), "range_end": _b64(b"/registry0")}
    async with httpx.AsyncClient(auth=auth) as client:
        statuses: list[int] = []

        async def read() -> None:
            statuses.append((await client.post(auth_etcd.url + "/v3/kv/range", json=body)).status_code)

        async with trio.open_nursery() as nursery:  # requests that start together share one token
            for _ in range(5):
                nursery.start_soon(read)
        assert statuses == [200] * 5
        assert auth.authentications == 1
        # Turning auth off and on drops every token etcd had handed out.
        token = root_token(auth_etcd)
        assert _call(auth_etcd, "/v3/auth/disable", {}, token).status_code == 200
        auth_etcd.call("/v3/auth/enable", {})
        assert (await client.post(auth_etcd.url + "/v3/kv/range", json=body)).status_code == 200
        assert auth.authentications == 2
        # The version call never needs a token.
        assert (await client.get(auth_etcd.url + "/version")).status_code == 200
        assert auth.authentications == 2
    assert "s3cret" not in repr(auth)


async def test_a_wrong_password_raises_access_denied(auth_etcd: EtcdServer) -> None:
    async with httpx.AsyncClient(auth=EtcdAuth(READER, "wrong")) as client:
        with pytest.raises(AccessDeniedError, match="authentication failed"):
            await client.post(auth_etcd.url + "/v3/kv/range", json={"key": _b64(b"/registry/")})


def test_user_against_an_etcd_without_auth_warns_and_reads(etcd: EtcdServer) -> None:
    etcd.put(key("pods", "web", "default"), obj("pods", "web", "default"))
    done = cli.run("run", "--endpoints", _hostport(etcd), "--user", "x:y", "--resources", "pods", "--once",
                   "--batch-window", "0.05")
    assert done.returncode == 0, done.stderr
    assert "authentication is not enabled there; reading without it" in done.stderr
    assert _names(done.stdout) == ["web"]


def test_record_with_user_keeps_password_and_token_out_of_the_cassette(
    auth_etcd: EtcdServer, tmp_path: Path,
) -> None:
    out = tmp_path / "rec.yaml"
    done = cli.run("record", "--endpoints", _hostport(auth_etcd), "--user", f"{READER}:{READER_PASSWORD}",
                   "--resources", "pods", "--to", str(out), "--duration", "1")
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert READER_PASSWORD not in text and "auth/authenticate" not in text
    assert not re.search(r"(?im)^\s*-?\s*authorization:", text)  # the header carrying the token is dropped
    assert not re.search(r"\b[A-Za-z]{16}\.\d+\b", text)  # nor anything shaped like etcd's simple token
    replayed = cli.run("run", "--replay", str(out), "--once")
    assert replayed.returncode == 0 and _names(replayed.stdout) == ["db", "web"]


# -- --insecure-skip-tls-verify ------------------------------------------------------------------


def test_insecure_skip_tls_verify_reads_without_the_ca(tls_etcd: EtcdServer, certs: dict[str, str]) -> None:
    tls_etcd.put(key("pods", "web", "default"), obj("pods", "web", "default"))
    # host:port with a TLS flag: https.
    done = cli.run("run", "--endpoints", _hostport(tls_etcd), "--insecure-skip-tls-verify",
                   "--cert", certs["client_cert"], "--key", certs["client_key"],
                   "--resources", "pods", "--once", "--batch-window", "0.05")
    assert done.returncode == 0, done.stderr
    assert _names(done.stdout) == ["web"]
    # The same files from etcdctl's variables, with the CA this time.
    done = cli.run("run", "--resources", "pods", "--once", "--batch-window", "0.05", env={
        "ETCDCTL_ENDPOINTS": _hostport(tls_etcd), "ETCDCTL_CACERT": certs["ca"],
        "ETCDCTL_CERT": certs["client_cert"], "ETCDCTL_KEY": certs["client_key"]})
    assert done.returncode == 0, done.stderr
    assert _names(done.stdout) == ["web"]
