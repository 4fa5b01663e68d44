"""Global options: ``--version``, ``-v``, ``--log-level``, ``--log-format``, before or after the command."""

from __future__ import annotations

import json
import logging
from importlib.metadata import version

import pytest

from tattler_etcd.cli import _log_settings, build_parser, main
from tattler_etcd.cli._logging import JsonFormatter
from tests.support import cli


def test_version_before_and_after_the_command() -> None:
    for argv in (["--version"], ["run", "--version"], ["decode", "--version"]):
        done = cli.run(*argv)
        assert done.returncode == 0 and done.stdout == f"tattler-etcd {version('tattler-etcd')}\n", argv


@pytest.mark.parametrize(("argv", "level", "fmt"), [
    (["run"], logging.WARNING, "text"),
    (["-v", "run"], logging.INFO, "text"),
    (["run", "-v"], logging.INFO, "text"),
    (["-v", "run", "-v"], logging.DEBUG, "text"),
    (["run", "-vvv"], logging.DEBUG, "text"),
    (["--log-level", "ERROR", "run"], logging.ERROR, "text"),
    (["run", "--log-level", "debug"], logging.DEBUG, "text"),
    (["--log-level", "error", "run", "--log-level", "info"], logging.INFO, "text"),  # the later one wins
    (["-vv", "run", "--log-level", "warning"], logging.WARNING, "text"),  # --log-level wins over -v
    (["--log-format", "json", "run"], logging.WARNING, "json"),
    (["run", "--log-format", "json"], logging.WARNING, "json"),
])
def test_global_options_are_taken_before_or_after_the_command(argv: list[str], level: int, fmt: str) -> None:
    assert _log_settings(build_parser().parse_args(argv)) == (level, fmt)


def test_a_bad_log_level_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--log-level", "loud"])
    assert exc.value.code == 2
    assert "'loud': give one of debug, info, warning, error, critical" in capsys.readouterr().err


def test_json_log_lines_carry_extras_but_never_bodies() -> None:
    record = logging.LogRecord("tattler_etcd.x", logging.WARNING, "", 0, "skipped %s", ("k",), None)
    record.key = "/registry/pods/a/b"
    record.resource = "pods"
    record.endpoint = "http://127.0.0.1:2379"
    record.object = {"spec": {"secret": "hunter2"}}
    record.value = b"k8s\0..."
    record.big = "x" * 10_000
    doc = json.loads(JsonFormatter().format(record))
    assert doc.pop("time").endswith("+00:00")
    assert doc == {"level": "warning", "logger": "tattler_etcd.x", "message": "skipped k",
                   "key": "/registry/pods/a/b", "resource": "pods", "endpoint": "http://127.0.0.1:2379"}


def test_json_log_format_of_a_real_run_is_one_object_per_line(tmp_path) -> None:
    done = cli.run("run", "--once", "-v", "--log-format", "json", "--to", str(tmp_path / "o.jsonl"))
    assert done.returncode == 0, done.stderr
    docs = [json.loads(line) for line in done.stderr.splitlines()]  # every line parses
    assert {"time", "level", "logger", "message"} <= set(docs[0])
    assert any("bundled recording" in d["message"] for d in docs)  # the CLI's own notice too
    assert any(d["logger"] == "tattler_etcd.pipeline.runner" and d["level"] == "info" for d in docs)
    assert not any("vcr" in d["logger"] for d in docs)  # vcrpy logs bodies: held back
    bad = cli.run("--log-format", "json", "run", "--batch-size", "0")
    assert bad.returncode == 2
    err = json.loads(bad.stderr)
    assert err["level"] == "error" and err["message"] == "--batch-size: must be at least 1"


def test_text_is_the_default_log_format() -> None:
    done = cli.run("run", "--once", "-v", "--to", "/dev/null")
    assert done.returncode == 0
    assert "INFO tattler_etcd.pipeline.runner: pipeline started" in done.stderr
    assert done.stderr.startswith("tattler-etcd: no source given")


@pytest.mark.etcd
def test_json_logs_name_the_key_and_resource_of_a_skipped_value(etcd) -> None:
    from tests.support.etcd_reading import key, obj

    etcd.put(key("pods", "web", "default"), obj("pods", "web", "default"))
    etcd.put(key("pods", "broken", "default"), b"k8s\x00\x0a\x09garbage-not-protobuf")
    done = cli.run("run", "--log-format", "json", "--endpoints", etcd.url, "--resources", "po", "--once",
                   "--batch-window", "0.05")
    assert done.returncode == 0, done.stderr
    docs = [json.loads(line) for line in done.stderr.splitlines()]
    skipped = [d for d in docs if d.get("key") == "/registry/pods/default/broken"]
    assert skipped and skipped[0]["resource"] == "pods" and skipped[0]["level"] == "warning"
    assert "garbage" not in done.stderr  # the value itself is never logged
    assert [json.loads(line)["name"] for line in done.stdout.splitlines()] == ["web"]
