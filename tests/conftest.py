"""Shared fixtures. ``etcd`` and ``nats_server``: a real etcd / nats-server process per test, always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.etcd import EtcdServer
from tests.support.nats import NatsServer

#: The upstream fixture pairs (test data only; the package never reads them).
TESTDATA = Path(__file__).resolve().parent / "data" / "k8s-api" / "HEAD"


@pytest.fixture
def etcd() -> Iterator[EtcdServer]:
    server = EtcdServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.fail(f"missing test data: {TESTDATA} (tests/data/k8s-api/HEAD in the repository)")
    return TESTDATA
