"""The output convention: ``-o FORMAT`` says the format, ``--to DEST`` (repeatable) where it goes.

Old spellings (``run -o FILE``, ``record --out FILE``) keep working with a
note on stderr; ambiguous values are refused. Most cases run ``cli.main``
in-process; one runs the installed console script.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tattler_etcd.cli import _destinations as dest
from tattler_etcd.cli import main
from tattler_etcd.codec import MAGIC
from tests.support import cli


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_to_writes_json_lines_and_can_be_repeated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert main(["run", "--once", "--to", str(a), "--to", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert _lines(a) and all(doc["change"] == "add" for doc in _lines(a))
    assert capsys.readouterr().out == ""  # nothing went to stdout


def test_to_dash_and_o_json_write_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "f.jsonl"
    assert main(["run", "--once", "--to", str(f)]) == 0
    capsys.readouterr()
    assert main(["run", "--once", "-o", "json", "--to", "-"]) == 0
    assert capsys.readouterr().out == f.read_text()
    assert main(["run", "--once", "-o", "json"]) == 0
    assert capsys.readouterr().out == f.read_text()


def test_old_o_file_spelling_works_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "old.jsonl"
    assert main(["run", "--once", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"-o {out} (a file) is deprecated; say --to {out}" in err
    assert _lines(out)
    assert main(["run", "--once", "--output", str(tmp_path / "old2.jsonl")]) == 0
    assert (tmp_path / "old2.jsonl").read_bytes() == out.read_bytes()


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "-o", "yaml"], "run: -o yaml: run writes json (to write a file named yaml, say --to ./yaml)"),
    (["run", "-o", "out.jsonl", "--to", "x.jsonl"], "is not a format (json) and --to is given too"),
    (["run", "--to", "a.jsonl", "--to", "./a.jsonl"], "--to ./a.jsonl: given twice"),
    (["run", "--to", "gopher://x/y"], "--to gopher://x/y: unknown scheme gopher:// (known: file://"),
    (["run", "--to", "no/such/dir/out.jsonl"], "--to no/such/dir/out.jsonl: No such file or directory"),
    (["decode", "-o", "out.yaml"], "decode: -o out.yaml: not a format; give json|yaml"),
    (["record", "--to", "-", "--events", "1", "--etcd-endpoints", "http://127.0.0.1:1"], "record: --to -: a recording"),
    (["record", "--to", "a.yaml", "--out", "b.yaml", "--events", "1", "--etcd-endpoints", "http://127.0.0.1:1"],
     "record: --out b.yaml and --to a.yaml name different files: give --to only"),
    (["record", "-o", "json", "--to", "a.yaml", "--events", "1"], "record: -o json: record writes yaml"),
    (["record", "--events", "1", "--etcd-endpoints", "http://127.0.0.1:1"], "record: give --to FILE"),
])
def test_bad_or_ambiguous_output_is_refused_with_a_clear_message(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not (tmp_path / "a.jsonl").exists()  # checked before anything was opened


def test_a_format_name_that_is_also_a_file_here_is_ambiguous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "json").write_text("mine\n")
    assert main(["run", "--once", "-o", "json"]) == 2
    assert "-o json is ambiguous: a format, and a file here; say --to ./json" in capsys.readouterr().err
    assert (tmp_path / "json").read_text() == "mine\n"
    # Said unambiguously, both meanings work.
    assert main(["run", "--once", "-o", "json", "--to", "-"]) == 0
    assert capsys.readouterr().out.count("\n") > 10
    assert main(["run", "--once", "--to", "./json"]) == 0
    assert len(_lines(tmp_path / "json")) > 10


def test_decode_and_encode_take_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d", "uid": "u1"}}
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(json.dumps(pod).encode())))
    assert main(["encode", "--to", str(tmp_path / "pod.pb")]) == 0
    raw = (tmp_path / "pod.pb").read_bytes()
    assert raw.startswith(MAGIC)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    assert main(["decode", "-o", "yaml", "--to", str(tmp_path / "pod.yaml")]) == 0
    import yaml

    assert yaml.safe_load((tmp_path / "pod.yaml").read_text())["metadata"]["name"] == "p"


async def test_a_registered_scheme_builds_its_destination(tmp_path: Path) -> None:
    """What i14's nats:// and https:// do: register a factory, get every batch."""
    from tattler_etcd.pipeline import Policy

    seen: list[int] = []
    closed: list[str] = []

    async def proc(batch: object) -> None:
        seen.append(len(batch))  # type: ignore[arg-type]

    @asynccontextmanager
    async def factory(target: str, ctx: dest.DestinationContext) -> AsyncIterator[dest.Destination]:
        assert ctx.format == "json"
        try:
            yield dest.Destination("probe", proc, Policy.DROP, buffer=2)
        finally:
            closed.append(target)

    dest.register_scheme("probe", factory, help="test scheme")
    try:
        assert "probe" in dest.schemes()
        ctx = dest.DestinationContext("json", on_closed=lambda: None)
        async with dest.open_destinations(["probe://a", "probe://b", "-"], ctx) as opened:
            assert [d.name for d in opened] == ["probe", "probe-2", "stdout"]
            assert opened[0].policy is Policy.DROP and opened[0].buffer == 2
        assert closed == ["probe://b", "probe://a"]  # closed in reverse order
    finally:
        dest._SCHEMES.pop("probe")


def test_a_lazily_registered_scheme_is_imported_on_first_use() -> None:
    dest.register_scheme("lazy", "tattler_etcd.cli._destinations:_file_destination", help="lazy")
    try:
        assert dest._factory("lazy://x") is dest._file_destination
    finally:
        dest._SCHEMES.pop("lazy")


def test_the_console_script_takes_to_and_notes_the_old_spelling(tmp_path: Path) -> None:
    new = cli.run("run", "--once", "--to", str(tmp_path / "n.jsonl"))
    old = cli.run("run", "--once", "-o", str(tmp_path / "o.jsonl"))
    assert new.returncode == old.returncode == 0, old.stderr
    assert (tmp_path / "n.jsonl").read_bytes() == (tmp_path / "o.jsonl").read_bytes() != b""
    assert "deprecated" not in new.stderr and "is deprecated; say --to" in old.stderr
    bad = cli.run("run", "-o", "yaml")
    assert bad.returncode == 2 and "run writes json" in bad.stderr and bad.stdout == ""
