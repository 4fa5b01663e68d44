"""Shared fixtures. ``etcd`` and ``nats_server``: a real etcd / nats-server process per test, always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.etcd import EtcdServer, make_test_certs
from tests.support.nats import NatsServer

#: The upstream fixture pairs (test data only; the package never reads them).
TESTDATA = Path(__file__).resolve().parent / "data" / "k8s-api" / "HEAD"


#: Variables that make the CLI pick a source (or TLS files, a user): a developer's own
#: settings must not turn a test of the bundled replay into a read of their cluster.
_SOURCE_ENV = ("KUBECONFIG", "ETCDCTL_ENDPOINTS", "ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY",
               "ETCDCTL_USER", "ETCDCTL_PASSWORD", "ETCDCTL_INSECURE_SKIP_TLS_VERIFY")


@pytest.fixture(autouse=True)
def _no_cluster_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SOURCE_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def etcd() -> Iterator[EtcdServer]:
    with EtcdServer().running() as server:
        yield server


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    with NatsServer().running() as server:
        yield server


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.fail(f"missing test data: {TESTDATA} (tests/data/k8s-api/HEAD in the repository)")
    return TESTDATA


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A throwaway CA with server and client certificates (tests.support.etcd.make_test_certs)."""
    return make_test_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def tls_etcd(certs: dict[str, str]) -> Iterator[EtcdServer]:
    """An etcd that serves HTTPS only and wants a client certificate signed by ``certs``' CA."""
    with EtcdServer(tls=certs).running() as server:
        yield server
