"""TLS settings (etcdctl's --cacert, --cert, --key) reach the client: a real etcd that requires them."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import trio

from tattler_etcd.data import Entry
from tattler_etcd.errors import ConfigError
from tattler_etcd.readers import Backoff
from tattler_etcd.readers.etcd import EtcdReader, TLSFiles
from tattler_etcd.stats import Counters
from tests.support.etcd import EtcdServer
from tests.support.etcd_reading import key, obj
from tests.support.reading import run_reader

pytestmark = pytest.mark.etcd


async def test_reader_lists_over_tls_with_a_client_certificate(tls_etcd: EtcdServer, certs: dict[str, str]) -> None:
    tls_etcd.put(key("pods", "a", "ns"), obj("pods", "a", "ns"))
    assert tls_etcd.url.startswith("https://")
    reader = EtcdReader(tls_etcd.url, resources=["pods"], once=True,
                        cacert=certs["ca"], cert=certs["client_cert"], key=certs["client_key"])
    with trio.fail_after(20):
        async with run_reader(reader, started=False) as h:
            await h.drain()
    assert list(h.state) == [key("pods", "a", "ns")]
    # The endpoint holds the same files (the gateway's TLS diagnosis reads them there).
    assert reader.endpoints[0].tls == TLSFiles(certs["ca"], certs["client_cert"], certs["client_key"])


def test_tls_files_are_checked_before_any_io(certs: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--cacert /nonexistent/ca.crt: no such file$"):
        EtcdReader("https://127.0.0.1:1", cacert="/nonexistent/ca.crt")
    with pytest.raises(ConfigError, match=r"^--cert and --key go together"):
        EtcdReader("https://127.0.0.1:1", cert=certs["client_cert"])
    not_a_key = tmp_path / "bad.key"
    not_a_key.write_text("nope")
    with pytest.raises(ConfigError, match=r"^--cert .* / --key .*: not a matching certificate and key"):
        EtcdReader("https://127.0.0.1:1", cert=certs["client_cert"], key=str(not_a_key))
    with pytest.raises(ConfigError, match=r"^--etcd-endpoints 'etcd:2379': give http://HOST:PORT"):
        EtcdReader("etcd:2379")
