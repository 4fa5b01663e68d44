"""The bundled recording and `tattler-etcd run` with no source: deterministic, offline, clean."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml

from tattler_etcd.cli import main
from tattler_etcd.replay import bundled_recording, read_recording
from tools.make_recording import PLANTED_SECRET, Cluster, initial

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["change", "source", "uid", "apiVersion", "kind", "namespace", "name", "resourceVersion", "object"]


def run_cli(*args: str, out: Path) -> bytes:
    assert main(["run", *args, "-o", str(out)]) == 0
    return out.read_bytes()


def test_the_default_run_replays_the_bundled_recording_as_json_lines(tmp_path: Path) -> None:
    data = run_cli(out=tmp_path / "a.jsonl")
    lines = [json.loads(line) for line in data.decode().splitlines()]
    assert lines and all(list(doc) == KEYS for doc in lines)
    assert {d["change"] for d in lines} >= {"snapshot", "delete", "update", "add"}
    assert {d["kind"] for d in lines} == {"Pod", "Node", "Namespace", "PersistentVolume"}
    # The same as naming the file explicitly.
    assert run_cli("--replay", str(bundled_recording()), out=tmp_path / "b.jsonl") == data


@pytest.mark.parametrize("extra", [[], ["--batch-size", "2"], ["--batch-window", "0.5"]])
def test_replaying_twice_gives_identical_bytes(tmp_path: Path, extra: list[str]) -> None:
    first = run_cli(*extra, out=tmp_path / "1.jsonl")
    second = run_cli(*extra, out=tmp_path / "2.jsonl")
    assert first and first == second


def test_every_entry_is_delivered_with_batches_of_one(tmp_path: Path) -> None:
    lines = run_cli("--batch-size", "1", out=tmp_path / "all.jsonl").decode().splitlines()
    changes = [json.loads(line)["change"] for line in lines]
    # Initial list, then the compaction's relist, then the watch.
    assert changes[0] == "add" and "snapshot" in changes
    assert changes.index("snapshot") < len(changes) - changes[::-1].index("update")
    info = read_recording(bundled_recording())
    listed = next(i for i, c in enumerate(changes) if c != "add")
    assert sum(c in ("add", "update", "delete") for c in changes[listed:]) >= info.watch_events


def test_once_stops_after_the_initial_list(tmp_path: Path, testdata: Path) -> None:
    lines = run_cli("--once", "--batch-size", "1", out=tmp_path / "once.jsonl").decode().splitlines()
    docs = [json.loads(line) for line in lines]
    assert docs and {d["change"] for d in docs} == {"add"}
    # Every initial object, once (tools/make_recording.py).
    assert len({d["uid"] for d in docs}) == len(docs) == len(initial(Cluster(testdata)))


def test_the_replay_needs_no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the replay tried to connect")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    assert run_cli(out=tmp_path / "offline.jsonl")


def _values(doc: Any) -> list[bytes]:
    """Every base64 ``value`` of an etcd key-value inside a reply (decoded)."""
    out: list[bytes] = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("value"), str) and isinstance(node.get("key"), str):
                out.append(base64.b64decode(node["value"]))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


def values_in_cassette(path: Path) -> list[bytes]:
    doc = yaml.safe_load(path.read_text())
    values: list[bytes] = []
    for item in doc["interactions"]:
        for line in item["response"]["body"]["string"].splitlines():
            if line.strip():
                values.extend(_values(json.loads(line)))
    return values


def assert_no_secret(path: Path, secret: str) -> None:
    assert secret.encode() not in path.read_bytes()
    values = values_in_cassette(path)
    assert values, "no values found: the search would prove nothing"
    assert not [v for v in values if secret.encode() in v]


def test_the_bundled_recording_holds_no_secret_and_is_small() -> None:
    path = bundled_recording()
    assert path.stat().st_size < 1_000_000
    assert_no_secret(path, PLANTED_SECRET)
    # The Pod that carried it is there, scrubbed: names stay, values go.
    pods = [v for v in values_in_cassette(path) if b"DB_PASSWORD" in v]
    assert pods and all(b"REDACTED" in v for v in pods)


def test_fixtures_recordings_points_at_the_bundled_file() -> None:
    assert (ROOT / "fixtures" / "recordings" / "cluster.yaml").resolve() == bundled_recording().resolve()


@pytest.mark.parametrize(("content", "why"), [
    ("just some text\n", r"not a cassette \(the YAML is a str"),
    ("interactions:\n- request: {method: GET\n", r"(truncated YAML|not a cassette \(invalid YAML)"),
])
def test_run_with_a_bad_file_says_which_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, why: str,
) -> None:
    import re

    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    assert main(["run", "--replay", str(bad)]) == 2
    err = capsys.readouterr().err
    assert re.search(r"^tattler-etcd: error: " + re.escape(str(bad)) + ": " + why, err), err


def test_a_request_the_recording_lacks_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    doc = yaml.safe_load(bundled_recording().read_text())
    watches = [i for i, it in enumerate(doc["interactions"]) if it["request"]["uri"].endswith("/v3/watch")]
    del doc["interactions"][watches[-1]]  # the last watch of some resource
    meta = doc["metadata"]["tattler_etcd"]
    meta["interactions"] -= 1
    timing = [t for i, t in sorted(meta["timing"].items()) if i != watches[-1]]
    meta["timing"] = dict(enumerate(timing))
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(doc))
    assert main(["run", "--replay", str(edited), "-o", str(tmp_path / "out.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"tattler-etcd: error: {edited}: the replay asked for POST http://" in err
    assert "/v3/watch, which the recording does not hold" in err


def test_run_for_other_resources_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--replay", str(bundled_recording()), "--resources", "pods,secrets"]) == 2
    err = capsys.readouterr().err
    assert f"{bundled_recording()}: recorded for resources pods,nodes,namespaces,persistentvolumes" in err


def test_the_readme_main_command_works_from_a_clean_clone(tmp_path: Path) -> None:
    """`bash scripts/run.sh` on a fresh clone: set-up, then `tattler-etcd run` with no source.

    The one step left out is setup.sh's `pip install` (it needs the network):
    the clone's .venv is made here with the clone itself and the installed
    dependencies on its path (a plain path line, so the editable install of
    this checkout is not), the console script pip would write, and the stamp
    that tells setup.sh the install is done. Only committed files take part.
    """
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("needs git and a git checkout")
    clone = Path(os.path.realpath(tmp_path)) / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=60)
    venv = clone / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "tattler_etcd_test.pth").write_text(f"{clone}\n{sysconfig.get_paths()['purelib']}\n")
    script = venv / "bin" / "tattler-etcd"
    script.write_text(f"#!{venv}/bin/python\nimport sys\nfrom tattler_etcd.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    stamp = subprocess.run(["bash", "scripts/setup.sh", "--stamp"], cwd=clone, check=True, capture_output=True,
                           text=True).stdout.strip()
    (clone / stamp).touch()

    proc = subprocess.run(["bash", "scripts/run.sh"], check=False, cwd=clone, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    lines = proc.stdout.decode().splitlines()
    assert lines and all(list(json.loads(line)) == KEYS for line in lines)
    check = subprocess.run([str(venv / "bin" / "python"), "-c", "import tattler_etcd; print(*tattler_etcd.__path__)"],
                           check=True, capture_output=True, text=True, cwd=tmp_path)
    assert check.stdout.split() == [str(clone / "tattler_etcd")]
    # The same entries as from this checkout (parsed: see test_replays_in_separate_processes_agree_byte_for_byte).
    here = run_cli(out=tmp_path / "here.jsonl").decode().splitlines()
    assert [json.loads(line) for line in lines] == [json.loads(line) for line in here]


def test_replays_in_separate_processes_agree_byte_for_byte(tmp_path: Path) -> None:
    outs = []
    for i in range(3):
        out = tmp_path / f"{i}.jsonl"
        subprocess.run([sys.executable, "-m", "tattler_etcd", "run", "-o", str(out)], check=True,
                       capture_output=True, timeout=120)
        outs.append(out.read_bytes())
    assert outs[0] and outs[0] == outs[1] == outs[2]
