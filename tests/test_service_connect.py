"""--connect-timeout: a source that never answers fails fast with its reason; after the first sync, retry and say so in /readyz."""

from __future__ import annotations

import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli_process import CliProcess
from tests.support.etcd import EtcdServer, free_port
from tests.support.etcd_reading import key, obj
from tests.support.prometheus import samples


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


@pytest.mark.parametrize("command", [["run", "--once"], ["record", "--duration", "60", "--to", "{tmp}/rec.yaml"]])
def test_an_endpoint_that_never_answers_fails_within_the_connect_timeout(
    silent_port: int, tmp_path: Path, command: list[str],
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    started = time.monotonic()
    cli = CliProcess([*args, "--endpoints", f"http://127.0.0.1:{silent_port}", "--connect-timeout", "2"])
    try:
        assert cli.wait(timeout=30) == 2
    finally:
        cli.close()
    took = time.monotonic() - started
    assert took < 20, took  # 2 s of trying, plus the interpreter's start; never the 30 s request timeout
    assert cli.lines[-1] == (f"tattler-etcd: error: http://127.0.0.1:{silent_port}: no answer within 2s before the first sync; "
                             f"last error: http://127.0.0.1:{silent_port}: version: no answer")
    assert "Traceback" not in cli.stderr
    assert not (tmp_path / "rec.yaml").exists()


def test_a_refused_endpoint_gives_the_refusal_as_its_reason() -> None:
    # The connect deadline cuts the last attempt short: the reason given is the
    # refusal seen before it, and it is said once (no ERROR log line beside it).
    port = free_port()
    cli = CliProcess(["run", "--once", "--endpoints", f"127.0.0.1:{port}", "--connect-timeout", "2"])
    try:
        assert cli.wait(timeout=30) == 2
    finally:
        cli.close()
    assert cli.lines[-1] == (f"tattler-etcd: error: http://127.0.0.1:{port}: no answer within 2s before the first sync; "
                             f"last error: etcd http://127.0.0.1:{port}/version: ConnectError: "
                             f"all attempts to connect to 127.0.0.1:{port} failed")
    assert [line for line in cli.lines if "ERROR" in line] == []


def _readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _until(port: int, status: int, timeout: float = 30.0) -> str:
    """Poll /readyz of another process until it answers ``status`` (bounded); its body."""
    deadline = time.monotonic() + timeout
    while True:
        got, body = _readyz(port)
        if got == status:
            return body
        if time.monotonic() > deadline:
            return f"(stayed {got}: {body})"
        time.sleep(0.1)  # polling another process's state, bounded by the deadline


@pytest.mark.etcd
def test_after_the_first_sync_a_lost_etcd_is_retried_and_readyz_says_so(etcd: EtcdServer, tmp_path: Path) -> None:
    etcd.put(key("pods", "a", "ns"), obj("pods", "a", "ns"))
    port = free_port()
    cli = CliProcess(["-v", "run", "--endpoints", etcd.url, "--resources", "pods", "--batch-window", "0.1",
                      "--connect-timeout", "1", "--metrics-address", f"127.0.0.1:{port}",
                      "--to", str(tmp_path / "out.jsonl")])
    try:
        cli.wait_for_line("pipeline started")
        assert _readyz(port) == (200, "every reader synced\n")
        etcd.stop()
        body = _until(port, 503)
        assert body.startswith("not ready: etcd down for "), body
        assert cli.proc.poll() is None  # past the connect timeout, but synced once: still retrying
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            got = samples(resp.read().decode())
        assert got[("tattler_reader_down_seconds", (("reader", "etcd"),))] > 1
        assert got[("tattler_reader_retries_total", (("reader", "etcd"),))] >= 1
        assert got[("tattler_reader_synced", (("reader", "etcd"),))] == 1
        etcd.start()
        assert _until(port, 200) == "every reader synced\n", cli.stderr
        cli.signal(signal.SIGTERM)
        assert cli.wait() == 0
    finally:
        cli.close()
