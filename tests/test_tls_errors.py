"""TLS mistakes and wrong URLs fail at once, typed and with their cause; they are never retried.

A real etcd with TLS and client-certificate auth (certificates made by openssl in
the test), and a plain one for the opposite mistake.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tattler_etcd.data import Entry
from tattler_etcd.errors import (
    CertificateVerifyError,
    ClientCertificateError,
    NoSuchPathError,
    PermanentReaderError,
    SchemeMismatchError,
)
from tattler_etcd.readers._reflector import Backoff
from tattler_etcd.readers.apiserver import APIServerReader, ClusterConfig
from tattler_etcd.readers.etcd import EtcdReader
from tattler_etcd.stats import Counters
from tests.fake_apiserver import FakeCluster, open_fake_apiserver
from tests.support.etcd import EtcdServer, make_test_certs
from tests.support.reading import run_reader as run_apiserver_reader

pytestmark = pytest.mark.etcd


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Another CA: its client certificate is not one the server trusts."""
    return make_test_certs(tmp_path_factory.mktemp("other"))


@pytest.fixture(scope="module")
def tls_etcd(certs: dict[str, str]) -> Iterator[EtcdServer]:
    with EtcdServer(tls=certs).running() as server:
        yield server


async def _fails(**kwargs: Any) -> tuple[PermanentReaderError, Counters]:
    """Run a --once reader that must fail permanently at once (no retry, well under any back-off)."""
    reader = EtcdReader(resources=["pods"], once=True,
                        backoff_factory=functools.partial(Backoff, initial=5.0, cap=5.0), **kwargs)
    counters = Counters()
    send, _recv = trio.open_memory_channel[list[Entry]](0)
    with trio.fail_after(15), pytest.raises(PermanentReaderError) as info:
        await reader.run(send, counters)
    assert counters["reader.etcd.retries"] == 0
    return info.value, counters


async def test_an_untrusted_server_certificate_names_the_verifier_reason(tls_etcd: EtcdServer) -> None:
    err, _ = await _fails(endpoints=tls_etcd.url)
    assert isinstance(err, CertificateVerifyError)
    assert f"etcd {tls_etcd.url}/version: certificate verify failed: unable to get local issuer certificate" in str(err)


async def test_no_client_certificate_says_the_server_wants_one(tls_etcd: EtcdServer, certs: dict[str, str]) -> None:
    err, _ = await _fails(endpoints=tls_etcd.url, cacert=certs["ca"])
    assert isinstance(err, ClientCertificateError)
    assert "the server wants a client certificate and none was given" in str(err)


async def test_a_client_certificate_from_another_ca_is_refused(
    tls_etcd: EtcdServer, certs: dict[str, str], other_certs: dict[str, str],
) -> None:
    err, _ = await _fails(endpoints=tls_etcd.url, cacert=certs["ca"],
                          cert=other_certs["client_cert"], key=other_certs["client_key"])
    assert isinstance(err, ClientCertificateError)
    assert "the server refused our client certificate" in str(err)


async def test_plain_http_to_the_tls_port(tls_etcd: EtcdServer) -> None:
    url = tls_etcd.url.replace("https://", "http://")
    err, _ = await _fails(endpoints=url)
    assert isinstance(err, SchemeMismatchError)
    assert "use https://" in str(err)


async def test_https_to_a_plain_port(etcd: EtcdServer) -> None:
    url = etcd.url.replace("http://", "https://")
    err, _ = await _fails(endpoints=url)
    assert isinstance(err, SchemeMismatchError)
    assert "use http://" in str(err)


async def test_an_api_path_that_does_not_exist(etcd: EtcdServer) -> None:
    err, _ = await _fails(endpoints=etcd.url, api_path="/v9/")
    assert isinstance(err, NoSuchPathError)
    assert str(err).startswith(f"etcd {etcd.url}/v9/kv/range: HTTP 404: no such path")


async def test_the_right_settings_still_work(tls_etcd: EtcdServer, certs: dict[str, str], tmp_path: Path) -> None:
    reader = EtcdReader(tls_etcd.url, resources=["pods"], once=True, cacert=certs["ca"],
                        cert=certs["client_cert"], key=certs["client_key"])
    send, recv = trio.open_memory_channel[list[Entry]](0)
    with trio.fail_after(15):
        async with recv, trio.open_nursery() as nursery:
            nursery.start_soon(reader.run, send, Counters())
            assert [chunk async for chunk in recv] == []


# --- the APIServer client: the same translation, against the fake APIServer over TLS -------------
# (The fake's trio TLS server closes without sending its alert when a client certificate is
# missing, unlike Go's servers, so that case is tested against etcd above: same code.)

def _server_context(certs: dict[str, str], *, client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs["server_cert"], certs["server_key"])
    if client_cert:
        ctx.load_verify_locations(certs["ca"])
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def _apiserver_fails(url: str, context: ssl.SSLContext | None) -> PermanentReaderError:
    config = ClusterConfig(server=url, ssl_context=context)
    reader = APIServerReader(["pods"], config=config, once=True, content_type="json")
    with trio.fail_after(15), pytest.raises(PermanentReaderError) as info:
        async with run_apiserver_reader(reader):
            pass
    return info.value


async def test_apiserver_plain_http_to_its_tls_port(certs: dict[str, str]) -> None:
    async with open_fake_apiserver(FakeCluster(), ssl_context=_server_context(certs, client_cert=False)) as srv:
        err = await _apiserver_fails(srv.url.replace("https://", "http://"), None)
    assert isinstance(err, SchemeMismatchError)
    assert "use https://" in str(err)
