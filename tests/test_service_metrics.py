"""Metrics from the Runner (a collector on the caller's registry) and the /metrics, /healthz, /readyz server."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import prometheus_client
import pytest
import trio

from tattler_etcd.data import ChangeType, Entry
from tattler_etcd.errors import ConfigError
from tattler_etcd.pipeline import Runner
from tattler_etcd.pipeline.metrics import readiness
from tattler_etcd.readers.memory import MemoryReader
from tattler_etcd.service import parse_address
from tattler_etcd.service.http import serve_endpoints
from tests.support.cli_process import CliProcess
from tests.support.etcd import EtcdServer, free_port
from tests.support.etcd_reading import key, obj
from tests.support.pipeline_objects import e
from tests.support.pipeline_objects import obj as kobj
from tests.support.prometheus import samples


async def test_the_runner_collector_counts_on_a_registry_of_ones_own(autojump_clock: trio.testing.MockClock) -> None:
    secret = Entry.from_dict(kobj("Secret", name="s", uid="u-s"), change=ChangeType.ADD,
                             source=e("x").source)
    runner = Runner(batch_window=1.0)
    runner.add_reader(MemoryReader([e("a", "7"), e("b", "9", change=ChangeType.ADD), secret], chunk_size=2))
    sizes: list[int] = []

    async def proc(batch: object) -> None:
        sizes.append(len(batch))  # type: ignore[arg-type]
        await trio.sleep(0.25)  # virtual: a processor that takes a quarter second

    runner.add_processor("out", proc)
    registry = prometheus_client.CollectorRegistry()
    registry.register(runner.collector())
    assert readiness(runner) == (False, "not ready: memory has not finished its initial sync")
    await runner.run()
    got = samples(prometheus_client.generate_latest(registry).decode())
    assert got[("tattler_entries_in_total", (("change", "update"), ("kind", "ConfigMap"), ("source", "etcd")))] == 1
    assert got[("tattler_entries_in_total", (("change", "add"), ("kind", "ConfigMap"), ("source", "etcd")))] == 1
    assert got[("tattler_entries_in_total", (("change", "add"), ("kind", "Secret"), ("source", "etcd")))] == 1
    assert got[("tattler_safety_dropped_total", (("kind", "Secret"),))] == 1
    assert ("tattler_safety_dropped_total", (("kind", "ConfigMap"),)) not in got
    assert sizes == [2]
    assert got[("tattler_processor_batches_total", (("processor", "out"),))] == 1
    assert got[("tattler_processor_entries_total", (("processor", "out"),))] == 2
    assert got[("tattler_processor_duration_seconds_count", (("processor", "out"),))] == 1
    assert got[("tattler_processor_duration_seconds_sum", (("processor", "out"),))] == pytest.approx(0.25)
    assert got[("tattler_processor_duration_seconds_bucket", (("le", "0.1"), ("processor", "out")))] == 0
    assert got[("tattler_processor_duration_seconds_bucket", (("le", "0.25"), ("processor", "out")))] == 1
    assert got[("tattler_batch_size_entries_sum", ())] == 2
    assert got[("tattler_batch_size_entries_bucket", (("le", "1.0"),))] == 0
    assert got[("tattler_batch_size_entries_bucket", (("le", "5.0"),))] == 1
    assert got[("tattler_reader_state", (("reader", "memory"), ("state", "stopped")))] == 1
    assert got[("tattler_reader_synced", (("reader", "memory"),))] == 1
    assert got[("tattler_reader_last_revision", (("reader", "memory"), ("resource", "")))] == 9
    assert readiness(runner) == (True, "every reader synced")
    assert got[("tattler_queue_depth", (("stage", "safety"),))] == 0
    # Nothing leaked into the global registry.
    assert prometheus_client.REGISTRY.get_sample_value("tattler_batches_total") is None


async def test_the_endpoints_serve_metrics_health_and_readiness() -> None:
    registry = prometheus_client.CollectorRegistry()
    state = {"ready": (False, "initial sync not finished: etcd")}
    # Threads of earlier tests (trio's idle worker cache) may still be there; none may be added.
    before = set(threading.enumerate())
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_endpoints, "127.0.0.1:0", registry, lambda: state["ready"])
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/healthz")).status_code == 200
            r = await client.get("/readyz")
            assert (r.status_code, r.text) == (503, "initial sync not finished: etcd\n")
            state["ready"] = (True, "every reader synced")
            assert (await client.get("/readyz")).status_code == 200
            r = await client.get("/metrics")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            assert (await client.get("/nope")).status_code == 404
        nursery.cancel_scope.cancel()
    assert set(threading.enumerate()) <= before, threading.enumerate()


def test_metrics_address_is_checked() -> None:
    assert parse_address("127.0.0.1:9090") == "127.0.0.1:9090"
    assert parse_address(":9090") == "0.0.0.0:9090"
    assert parse_address("[::1]:9090") == "[::1]:9090"
    for bad in ("9090", "host:", "host:http", "host:70000"):
        with pytest.raises(ConfigError, match=r"^--metrics-address '.*': give HOST:PORT"):
            parse_address(bad)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.mark.etcd
def test_a_scrape_during_a_live_run(etcd: EtcdServer, tmp_path: Path) -> None:
    etcd_revision = etcd.put_many([(key("pods", f"p{i}", "ns"), obj("pods", f"p{i}", "ns")) for i in range(20)])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    out = tmp_path / "out.jsonl"
    cli = CliProcess(["-v", "run", "--etcd-endpoints", etcd.url, "--resources", "pods", "--batch-window", "0.2",
                      "--metrics-address", f"127.0.0.1:{port}", "-o", str(out)])
    try:
        cli.wait_for_line("pipeline started")
        assert _get(base + "/readyz") == (200, "every reader synced\n")
        assert _get(base + "/healthz") == (200, "ok\n")
        # The batch window is 0.2 s of another process's time: scrape until the first batch was delivered.
        deadline = time.monotonic() + 20
        while True:
            status, text = _get(base + "/metrics")
            assert status == 200
            got = samples(text)
            delivered = sum(v for (name, _), v in got.items() if name == "tattler_processor_entries_total")
            if delivered >= 20 or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # polling another process, as the etcd fixture does; bounded by the deadline
        assert delivered == 20
        assert got[("tattler_entries_in_total", (("change", "add"), ("kind", "Pod"), ("source", "etcd")))] >= 20
        assert got[("tattler_reader_state", (("reader", "etcd"), ("state", "watching")))] == 1
        assert got[("tattler_reader_synced", (("reader", "etcd"),))] == 1
        assert got[("tattler_reader_down_seconds", (("reader", "etcd"),))] == 0
        position = got[("tattler_reader_last_revision", (("reader", "etcd"), ("resource", "pods")))]
        assert position >= etcd_revision
        lag = got[("tattler_etcd_revision_lag", (("reader", "etcd"), ("resource", "pods")))]
        assert 0 <= lag <= etcd.revision() - etcd_revision
        # (the processor is named by its destination: `file` for -o FILE)
        assert [v for (name, _), v in got.items() if name == "tattler_processor_duration_seconds_count"] == [1]
        cli.signal(signal.SIGTERM)
        assert cli.wait() == 0
    finally:
        cli.close()
    names = {json.loads(line)["name"] for line in out.read_text().splitlines()}
    assert {f"p{i}" for i in range(20)} <= names


def test_readyz_is_503_while_the_first_sync_has_not_happened(tmp_path: Path) -> None:
    port = free_port()
    nothing = free_port()  # no etcd there: the reader keeps retrying
    cli = CliProcess(["-v", "run", "--etcd-endpoints", f"http://127.0.0.1:{nothing}", "--resources", "pods",
                      "--metrics-address", f"127.0.0.1:{port}", "-o", str(tmp_path / "out.jsonl")])
    try:
        cli.wait_for_line("serving /metrics")
        assert _get(f"http://127.0.0.1:{port}/readyz") == (503, "not ready: etcd has not finished its initial sync\n")
        assert _get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
        cli.signal(signal.SIGTERM)
        assert cli.wait() == 0
    finally:
        cli.close()
