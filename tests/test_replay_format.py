"""Bad recordings fail with a RecordingError naming the file and the problem."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tattler_etcd.errors import RecordingError
from tattler_etcd.replay import (
    FORMAT_VERSION,
    METADATA_KEY,
    RecordingInfo,
    Timing,
    check_resources,
    dump_cassette,
    read_recording,
)

INFO = RecordingInfo(source="etcd", resources=("pods", "nodes"), endpoint="http://127.0.0.1:2379",
                     timing=tuple(Timing(at=0.25 * i) for i in range(5)))


def interaction(i: int) -> tuple[dict[str, object], dict[str, object]]:
    req = {"method": "POST", "uri": "http://127.0.0.1:2379/v3/kv/range", "body": f'{{"key":"{i}"}}', "headers": {}}
    resp = {"status": {"code": 200, "message": "OK"}, "headers": {},
            "body": {"string": f'{{"header":{{"revision":"{i}"}}}}\n' * 40}}
    return req, resp


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.yaml"
    dump_cassette(path, [interaction(i) for i in range(5)], INFO)
    return path


def fails(path: Path, why: str) -> None:
    with pytest.raises(RecordingError, match=r"^" + re.escape(str(path)) + r": " + why):
        read_recording(path)


def test_a_good_recording_reads_back(good: Path) -> None:
    info = read_recording(good)
    assert info.resources == ("pods", "nodes")
    assert info.interactions == 5 and info.format == FORMAT_VERSION
    assert not list(good.parent.glob("*.partial"))


def test_missing_file(tmp_path: Path) -> None:
    fails(tmp_path / "nope.yaml", "no such recording")


@pytest.mark.parametrize(("content", "why"), [
    (b"", "empty file, not a cassette"),
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", r"not a cassette \(not UTF-8"),
    (b"hello: [unclosed\n  - x: y: z\n", r"(not a cassette \(invalid YAML|truncated YAML)"),
    (b"- just\n- a list\n", r"not a cassette \(the YAML is a list"),
    (b"version: 1\nfoo: bar\n", r"not a cassette \(no 'interactions' key\)"),
    (b"interactions: []\nversion: 2\n", r"vcrpy cassette version 2; expected 1"),
    (b"interactions: []\nversion: 1\n", r"a vcrpy cassette, but not a tattler-etcd recording"),
    (b"interactions: [1, 2]\nversion: 1\n", r"interaction 0 is not a request/response pair"),
])
def test_not_a_recording(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    fails(path, why)


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.9, 0.99])
def test_truncated_files_are_refused(good: Path, fraction: float) -> None:
    data = good.read_bytes()
    good.write_bytes(data[: int(len(data) * fraction)])
    fails(good, r"(truncated|not a cassette \(invalid YAML)")


def test_truncated_at_a_line_boundary_is_refused(good: Path) -> None:
    lines = good.read_text().splitlines(keepends=True)
    # Cut after the last interaction: the YAML still parses, but the trailer is gone.
    cut = next(i for i, line in enumerate(lines) if line.startswith("metadata:"))
    good.write_text("".join(lines[:cut]))
    fails(good, r"truncated cassette \(no 'version' key")


def test_another_format_version(good: Path) -> None:
    doc = yaml.safe_load(good.read_text())
    doc["metadata"][METADATA_KEY]["format"] = FORMAT_VERSION + 1
    good.write_text(yaml.safe_dump(doc))
    fails(good, rf"recording format {FORMAT_VERSION + 1}; this tattler-etcd reads format {FORMAT_VERSION}")


def test_a_format_1_file_without_timing_is_refused_clearly(good: Path) -> None:
    doc = yaml.safe_load(good.read_text())
    doc["metadata"][METADATA_KEY]["format"] = 1
    del doc["metadata"][METADATA_KEY]["timing"]
    good.write_text(yaml.safe_dump(doc))
    fails(good, rf"recording format 1; this tattler-etcd reads format {FORMAT_VERSION} \(re-record it")


def test_the_timing_is_read_back(good: Path) -> None:
    assert read_recording(good).timing == INFO.timing
    assert read_recording(good).duration == 1.0


@pytest.mark.parametrize(("edit", "why"), [
    (lambda t: t.pop(3), r"metadata.tattler_etcd.timing must have one entry for each of the 5 interactions"),
    (lambda t: t.__setitem__(1, {"at": "soon"}), r"metadata.tattler_etcd.timing.1: bad timing"),
    (lambda t: t.__setitem__(1, {"at": 2.0, "lines": [[1.0, 3]], "end": 3.0}),
     r"metadata.tattler_etcd.timing.1: offsets must be non-negative and in order"),
    (lambda t: t.__setitem__(1, {"at": 0.1, "lines": [[0.2, 3]], "end": 0.3}),
     r"interaction 1: the timing's lines cover 3 bytes, the body holds \d+"),
])
def test_bad_timing(good: Path, edit: Any, why: str) -> None:
    doc = yaml.safe_load(good.read_text())
    edit(doc["metadata"][METADATA_KEY]["timing"])
    good.write_text(yaml.safe_dump(doc))
    fails(good, why)


def test_interactions_removed_by_hand(good: Path) -> None:
    doc = yaml.safe_load(good.read_text())
    del doc["interactions"][2:]
    good.write_text(yaml.safe_dump(doc))
    fails(good, r"truncated or edited cassette: metadata says 5 interactions, the file holds 2")


@pytest.mark.parametrize(("field", "value", "why"), [
    ("source", "zookeeper", r"metadata.tattler_etcd.source is 'zookeeper'"),
    ("resources", [], r"metadata.tattler_etcd.resources must be a non-empty list"),
    ("endpoint", 42, r"metadata.tattler_etcd.endpoint must be a URL"),
    ("page_size", "lots", r"metadata.tattler_etcd: invalid literal"),
])
def test_bad_metadata_fields(good: Path, field: str, value: object, why: str) -> None:
    doc = yaml.safe_load(good.read_text())
    doc["metadata"][METADATA_KEY][field] = value
    good.write_text(yaml.safe_dump(doc))
    fails(good, why)


def test_recorded_for_other_resources(good: Path) -> None:
    info = read_recording(good)
    assert check_resources(info, None, str(good)) == ("pods", "nodes")
    assert check_resources(info, ["nodes", "pods"], str(good)) == ("nodes", "pods")
    with pytest.raises(RecordingError, match=(
        r"^" + re.escape(str(good)) + r": recorded for resources pods,nodes; asked to replay pods,secrets "
        r"\(replay with --resources pods,nodes\)$"
    )):
        check_resources(info, ["pods", "secrets"], str(good))


def test_the_public_names_are_exported_and_complete() -> None:
    from tattler_etcd import replay

    # (Under pytest the package may be assertion-rewritten, which adds "@py_builtins"-style names.)
    public = {n for n in vars(replay) if n.isidentifier() and not n.startswith("_") and n != "annotations"}
    assert set(replay.__all__) == public
    assert len(replay.__all__) == len(set(replay.__all__))
