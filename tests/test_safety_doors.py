"""No secret through any door: values planted in a real etcd, read back by the real CLI, every output scanned.

The places (tests/support/planted.py): every container list of every workload
kind and their last-applied copies, PodPreset env, ControllerRevision data
(JSON, a nested object, a nested Secret, bytes that are no JSON), unknown
protobuf fields, a last-applied that is not JSON, Secrets (with a last-applied
claiming another kind), JSON-stored objects, custom resources, undecodable
values, and what user rules cover (args, ConfigMap data, annotations, labels,
a custom resource's env). Outputs scanned: JSON lines, stderr, every log
record, cassettes; as text, inside base64, JSON strings and YAML.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tattler_etcd.cli import main
from tests.support.etcd import EtcdServer
from tests.support.leaks import leaked
from tests.support.planted import USER_RULES, Planted, build

pytestmark = pytest.mark.etcd


@pytest.fixture
def planted(etcd: EtcdServer) -> Planted:
    p = build()
    for key, value in p.items:
        etcd.put(key, value)
    return p


def _rules_args(tmp_path: Path) -> list[str]:
    # Half on the command line, half in a file: both ways are used.
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text("redact:\n" + "".join(f"  - '{r}'\n" for r in USER_RULES[2:]))
    return [*(a for r in USER_RULES[:2] for a in ("--redact", r)), "--redact-file", str(rules_file)]


def test_nothing_planted_leaves_through_run_run_allow_secrets_or_record(
    etcd: EtcdServer, planted: Planted, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    resources = ",".join(sorted(planted.resources))
    rules = _rules_args(tmp_path)
    outputs: dict[str, str | bytes] = {}
    for name, extra in (("run", []), ("run-allow-secrets", ["--allow-secrets"])):
        out = tmp_path / f"{name}.jsonl"
        assert main(["run", "--etcd-endpoints", etcd.url, "--resources", resources, "--once",
                     "-o", str(out), *extra, *rules]) == 0
        outputs[name] = out.read_text()
        outputs[f"{name} stderr"] = capsys.readouterr().err
    cassette = tmp_path / "rec.yaml"
    assert main(["record", "--etcd-endpoints", etcd.url, "--resources", resources, "--duration", "0.5",
                 "--out", str(cassette), *rules]) == 0
    outputs["cassette"] = cassette.read_bytes()
    outputs["record stderr"] = capsys.readouterr().err
    replayed = tmp_path / "replayed.jsonl"
    assert main(["run", "--replay", str(cassette), "-o", str(replayed), "--allow-secrets"]) == 0
    outputs["replay"] = replayed.read_text()
    outputs["replay stderr"] = capsys.readouterr().err
    outputs["logs"] = "\n".join(
        f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)

    assert leaked(planted.markers, outputs) == {}

    # The objects themselves came through (scrubbed), so the scan looked at something.
    for name in ("run", "run-allow-secrets", "replay"):
        docs = [json.loads(line) for line in outputs[name].splitlines()]  # type: ignore[union-attr]
        names = {d["name"] for d in docs}
        assert planted.passing <= names, (name, planted.passing - names)
        assert ("sec" in names) == (name != "run")
        assert "cut" not in names and "junk" not in names
    text = outputs["run"]
    assert isinstance(text, str)
    assert text.count('"REDACTED"') > 40
    # Unknown fields were dropped (counted per kind, logged with the key only).
    assert any("pods/ns/pod-extras" in r.getMessage() and "cannot read" in r.getMessage() for r in caplog.records)
