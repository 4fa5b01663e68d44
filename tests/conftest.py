"""Shared fixtures. ``etcd``: a real etcd process per test, always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.etcd import EtcdServer

#: The upstream fixture pairs (test data only; the package never reads them).
TESTDATA = Path(__file__).resolve().parents[1].parent / "shared" / "k8s-api-testdata" / "HEAD"


@pytest.fixture
def etcd() -> Iterator[EtcdServer]:
    server = EtcdServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.fail(f"missing test data: {TESTDATA} (../shared beside the checkout)")
    return TESTDATA
