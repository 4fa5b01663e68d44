"""NATS delivery to a server that wants TLS, a client certificate, a password or a token (a real nats-server)."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.delivery import open_state
from tattler_etcd.delivery.nats import open_nats_processor, parse_nats_url
from tattler_etcd.errors import ConfigError, DeliveryError
from tests.support.cli import run as run_cli
from tests.support.etcd import make_test_certs
from tests.support.nats import NatsServer, kv_state
from tests.support.pipeline_objects import obj


def pod(name: str) -> Entry:
    return Entry.from_dict(obj("Pod", name=name, rv="3"), change=ChangeType.ADD, source=SourceType.ETCD)


@pytest.fixture
def mtls_server(certs: dict[str, str]) -> Iterator[NatsServer]:
    with NatsServer(tls=certs, verify_clients=True).running() as server:
        yield server


def client_tls(certs: dict[str, str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=certs["ca"])
    ctx.load_cert_chain(certs["client_cert"], certs["client_key"])
    return ctx


def tls_query(certs: dict[str, str]) -> str:
    return f"ca={certs['ca']}&cert={certs['client_cert']}&key={certs['client_key']}"


async def test_tls_with_a_client_certificate_publishes_and_reads_back(
        mtls_server: NatsServer, certs: dict[str, str]) -> None:
    url = f"{mtls_server.url}?{tls_query(certs)}"
    with trio.fail_after(30):
        async with open_nats_processor(url) as proc:
            await proc([pod("a"), pod("b")])
        assert proc.published == 2
        state = await kv_state(mtls_server.url, tls=client_tls(certs), tls_hostname="127.0.0.1")
        assert sorted(state) == ["pods.ns.a", "pods.ns.b"]
        # The consumer side takes the same options, in the URL or as ConnectOptions.
        async with open_state(url, until_synced=True) as feed:
            assert sorted([e.name async for e in feed]) == ["a", "b"]
        async with open_state(mtls_server.url, until_synced=True,
                              options=parse_nats_url(url).connect) as feed:
            assert sorted([e.name async for e in feed]) == ["a", "b"]


async def test_an_untrusted_server_certificate_is_a_clear_error_not_a_wait(
        mtls_server: NatsServer, certs: dict[str, str], tmp_path: Path) -> None:
    other = make_test_certs(tmp_path / "other")  # another CA: the server's certificate is not signed by it
    url = f"{mtls_server.url}?ca={other['ca']}&cert={certs['client_cert']}&key={certs['client_key']}"
    with trio.fail_after(30), pytest.raises(DeliveryError, match="certificate is not trusted: unable to get local issuer certificate"):
        async with open_nats_processor(url):
            pass


async def test_without_a_client_certificate_the_server_refuses(mtls_server: NatsServer,
                                                                certs: dict[str, str]) -> None:
    with trio.fail_after(30), pytest.raises(DeliveryError, match="cannot connect"):
        async with open_nats_processor(f"{mtls_server.url}?ca={certs['ca']}"):
            pass


async def test_tls_asked_of_a_plain_server_sends_nothing(nats_server: NatsServer, certs: dict[str, str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_TEST_PASSWORD", "hunter2")
    url = f"nats://me@127.0.0.1:{nats_server.port}?ca={certs['ca']}&password_env=NATS_TEST_PASSWORD"
    with trio.fail_after(30), pytest.raises(DeliveryError, match="does not offer it; nothing was sent"):
        async with open_nats_processor(url):
            pass


async def test_user_and_password_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with NatsServer(user="tattler", password="s3cret-pw").running() as server:
        with trio.fail_after(30):
            with pytest.raises(DeliveryError, match="cannot connect") as refused:
                async with open_nats_processor(f"nats://tattler@127.0.0.1:{server.port}"):
                    pass
            monkeypatch.setenv("NATS_TEST_PASSWORD", "s3cret-pw")
            async with open_nats_processor(
                    f"nats://tattler@127.0.0.1:{server.port}?password_env=NATS_TEST_PASSWORD") as proc:
                await proc([pod("a")])
            assert proc.published == 1
            assert list(await kv_state(server.url, user="tattler", password="s3cret-pw")) == ["pods.ns.a"]
    assert "s3cret-pw" not in str(refused.value)


async def test_a_token_from_a_file_and_the_cli(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("tok-123456\n")
    with NatsServer(token="tok-123456").running() as server:
        url = f"{server.url}?token_file={token}"
        with trio.fail_after(30):
            async with open_nats_processor(url) as proc:
                await proc([pod("a")])
            assert proc.published == 1
        # The CLI takes the same URL: consume prints the state with the token from the file.
        result = await trio.to_thread.run_sync(lambda: run_cli("consume", url, "--once", timeout=60))
        assert result.returncode == 0, result.stderr
        assert [json.loads(line)["name"] for line in result.stdout.splitlines()] == ["a"]
        assert "tok-123456" not in result.stderr


async def test_an_nkey_seed_file(tmp_path: Path) -> None:
    import nkeys

    seed = nkeys.encode_seed(bytes(range(32)), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    (tmp_path / "user.nk").write_bytes(seed + b"\n")
    with NatsServer(nkey_user=public).running() as server:
        with trio.fail_after(30):
            with pytest.raises(DeliveryError, match="cannot connect"):
                async with open_nats_processor(server.url):
                    pass
            async with open_nats_processor(f"{server.url}?nkey={tmp_path / 'user.nk'}") as proc:
                await proc([pod("a")])
            assert proc.published == 1


def test_bad_connection_options_are_config_errors_naming_them(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_NATS_VAR", raising=False)
    cases = {
        "ca=/nonexistent/ca.pem": "ca /nonexistent/ca.pem: not a readable file",
        "creds=/nonexistent/x.creds": "creds /nonexistent/x.creds: not a readable file",
        f"token_file={tmp_path / 'missing'}": "token_file",
        "token_env=NO_SUCH_NATS_VAR": "the variable NO_SUCH_NATS_VAR is not set",
        "insecure=maybe": "insecure must be 1/true or 0/false",
    }
    for query, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            parse_nats_url(f"nats://127.0.0.1:4222?{query}")
    options = parse_nats_url("nats://127.0.0.1:4222?insecure=1&stream=s")
    assert options.connect.wants_tls and options.stream == "s" and options.url == "nats://127.0.0.1:4222"
