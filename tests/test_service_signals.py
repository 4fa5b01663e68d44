"""SIGTERM and SIGINT drain a live run (every listed object written) and end it cleanly; record keeps its cassette."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tattler_etcd.service import SignalDrain, exit_status
from tests.support.cli_process import CliProcess
from tests.support.etcd import EtcdServer
from tests.support.etcd_reading import key, obj

pytestmark = pytest.mark.etcd

N = 300


def _fill(etcd: EtcdServer) -> None:
    etcd.put_many([(key("pods", f"p{i}", "ns"), obj("pods", f"p{i}", "ns")) for i in range(N)])


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_signal_during_a_live_run_delivers_the_open_batch_and_exits_cleanly(
    etcd: EtcdServer, tmp_path: Path, sig: int, status: int,
) -> None:
    _fill(etcd)
    out = tmp_path / "out.jsonl"
    # A 60 s window: nothing is written before the signal; everything must be after it.
    cli = CliProcess(["-v", "run", "--etcd-endpoints", etcd.url, "--resources", "pods",
                      "--batch-window", "60", "-o", str(out)])
    try:
        cli.wait_for_line("pipeline started")
        assert out.read_text() == ""
        cli.signal(sig)
        assert cli.wait() == status
    finally:
        cli.close()
    names = sorted(json.loads(line)["name"] for line in out.read_text().splitlines())
    assert names == sorted(f"p{i}" for i in range(N))
    assert "Traceback" not in cli.stderr
    said = [line for line in cli.lines if "received: finishing the run" in line]
    assert len(said) == 1, cli.stderr
    assert signal.Signals(sig).name in said[0]


def test_sigint_in_record_leaves_a_cassette_that_replays(etcd: EtcdServer, tmp_path: Path) -> None:
    _fill(etcd)
    cassette = tmp_path / "rec.yaml"
    cli = CliProcess(["-v", "record", "--etcd-endpoints", etcd.url, "--resources", "pods",
                      "--duration", "600", "--to", str(cassette)])
    try:
        # The watch is open once the reader's list was handed on; then stop it by hand.
        cli.wait_for_line("/v3/watch")
        cli.signal(signal.SIGINT)
        assert cli.wait() == 130
    finally:
        cli.close()
    assert "Traceback" not in cli.stderr
    assert "stopped by signal" in cli.stderr
    out = tmp_path / "replayed.jsonl"
    replay = CliProcess(["run", "--replay", str(cassette), "--once", "-o", str(out)])
    try:
        assert replay.wait() == 0, replay.stderr
    finally:
        replay.close()
    names = sorted(json.loads(line)["name"] for line in out.read_text().splitlines())
    assert names == sorted(f"p{i}" for i in range(N))


def test_a_second_signal_exits_at_once_with_128_plus_the_signal() -> None:
    stops: list[str] = []
    exits: list[int] = []
    drain = SignalDrain(lambda: stops.append("stop"), exit=exits.append)
    drain.on_signal(signal.SIGTERM)
    assert (stops, exits, drain.received) == (["stop"], [], signal.SIGTERM)
    drain.on_signal(signal.SIGINT)
    assert (stops, exits) == (["stop"], [128 + signal.SIGINT])


def test_exit_status_is_0_for_sigterm_and_130_for_sigint() -> None:
    assert (exit_status(None), exit_status(signal.SIGTERM), exit_status(signal.SIGINT)) == (0, 0, 130)
