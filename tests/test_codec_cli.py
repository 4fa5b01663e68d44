"""``tattler-etcd decode`` / ``encode``."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from tattler_etcd.cli import main


class _Stdin:
    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)


def run(monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes],
        argv: list[str], data: bytes) -> tuple[int, bytes, str]:
    monkeypatch.setattr(sys, "stdin", _Stdin(data))
    status = main(argv)
    out, err = capsysbinary.readouterr()
    return status, out, err.decode()


def test_decode_prints_json(testdata: Path, monkeypatch: pytest.MonkeyPatch,
                            capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    pb = (testdata / "core.v1.Pod.pb").read_bytes()
    status, out, err = run(monkeypatch, capsysbinary, ["decode"], pb + b"\n")  # as etcdctl prints it
    assert status == 0, err
    assert json.loads(out) == json.loads((testdata / "core.v1.Pod.json").read_text())


def test_decode_yaml(testdata: Path, monkeypatch: pytest.MonkeyPatch,
                     capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    pb = (testdata / "core.v1.ConfigMap.pb").read_bytes()
    status, out, _ = run(monkeypatch, capsysbinary, ["decode", "-o", "yaml"], pb)
    assert status == 0
    assert yaml.safe_load(out) == json.loads((testdata / "core.v1.ConfigMap.json").read_text())


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_encode_reads_json_or_yaml(testdata: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsysbinary: pytest.CaptureFixture[bytes], fmt: str) -> None:
    obj = json.loads((testdata / "apps.v1.Deployment.json").read_text())
    text = json.dumps(obj) if fmt == "json" else yaml.safe_dump(obj)
    status, out, err = run(monkeypatch, capsysbinary, ["encode"], text.encode())
    assert status == 0, err
    assert out == (testdata / "apps.v1.Deployment.pb").read_bytes()


@pytest.mark.parametrize(("argv", "data", "message"), [
    (["decode"], b"", r"^tattler-etcd: error: stdin: no value"),
    (["decode"], b"garbage", r"^tattler-etcd: error: stdin: not a Kubernetes object"),
    (["decode"], b"k8s:enc:kms:v2:key:xxxx", r"^tattler-etcd: error: stdin: value is encrypted at rest \(provider kms"),
    (["decode", "--max-size", "3"], b"k8s\x00abcd", r"^tattler-etcd: error: stdin: value of 8 bytes is over"),
    (["encode"], b"[1, 2]", r"^tattler-etcd: error: stdin: expected one object"),
    (["encode"], b"a: [", r"^tattler-etcd: error: stdin: neither JSON nor YAML"),
    (["encode"], b'{"apiVersion": "v1", "kind": "Nope"}', r"^tattler-etcd: error: no schema for apiVersion 'v1' kind 'Nope'"),
])
def test_bad_input_is_one_line_and_status_2(monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes],
                                            argv: list[str], data: bytes, message: str) -> None:
    status, out, err = run(monkeypatch, capsysbinary, argv, data)
    assert status == 2
    assert out == b""
    assert err.count("\n") == 1
    assert re.match(message, err)
