"""The reflector core's pure parts: the ghost rule as a table, the back-off, the index file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tattler_etcd.readers._reflector import Backoff, Identity, Index, IndexFile, relist_deletes

#: (what the index knew, what the relist found, the DELETEs due): key -> (uid, resourceVersion)
GHOST_TABLE: list[tuple[str, dict[str, Identity], dict[str, Identity], list[tuple[str, Identity]]]] = [
    ("nothing known", {}, {"a": ("u1", "5")}, []),
    ("all still there", {"a": ("u1", "5")}, {"a": ("u1", "9")}, []),
    ("gone", {"a": ("u1", "5"), "b": ("u2", "6")}, {"a": ("u1", "5")}, [("b", ("u2", "6"))]),
    ("re-created under the same key: the old uid goes", {"a": ("u1", "5")}, {"a": ("u9", "12")},
     [("a", ("u1", "5"))]),
    ("both", {"a": ("u1", "5"), "b": ("u2", "6"), "c": ("u3", "7")}, {"a": ("u1", "5"), "b": ("u8", "11")},
     [("b", ("u2", "6")), ("c", ("u3", "7"))]),
    ("everything gone", {"a": ("u1", "5")}, {}, [("a", ("u1", "5"))]),
]


@pytest.mark.parametrize(("why", "old", "new", "due"), GHOST_TABLE, ids=[row[0] for row in GHOST_TABLE])
def test_the_ghost_rule(why: str, old: dict[str, Identity], new: dict[str, Identity],
                        due: list[tuple[str, Identity]]) -> None:
    assert relist_deletes(old, new) == due


def test_backoff_doubles_to_its_cap_and_starts_over() -> None:
    b = Backoff(rand=lambda: 0.0)
    assert [b.next_delay(t) for t in range(8)] == [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]
    b.reset()
    assert b.next_delay(8) == 0.8
    assert b.next_delay(8 + 121) == 0.8  # two quiet minutes: from the start again
    assert Backoff(rand=lambda: 1.0).next_delay(0) == 1.6  # jitter stretches by up to 100%


def index(n: int) -> Index:
    return Index({f"/registry/pods/ns/p{i}": (f"uid-{i}", str(100 + i)) for i in range(n)},
                 api_version="v1", kind="Pod")


def test_index_file_round_trip_is_compact_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "revisions.json.index"
    f = IndexFile(path, scope="/registry")
    assert f.load() == {}
    assert f.save({"pods": ("812", index(3)), "minions": ("790", Index())}) == "saved"
    doc = json.loads(path.read_text())
    assert doc["resources"]["pods"]["prefix"] == "/registry/pods/ns/"  # keys without their common prefix
    assert doc["resources"]["pods"]["items"][0] == ["p0", "uid-0", "100"]
    loaded = IndexFile(path, scope="/registry").load()
    assert loaded["pods"][0] == "812" and loaded["pods"][1].items == index(3).items
    assert (loaded["pods"][1].api_version, loaded["pods"][1].kind) == ("v1", "Pod")
    assert loaded["minions"][0] == "790" and loaded["minions"][1].items == {}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_over_its_bound_the_index_is_not_written_and_the_old_one_goes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "idx"
    assert IndexFile(path).save({"pods": ("1", index(2))}) == "saved"
    small = IndexFile(path, max_bytes=200)
    caplog.set_level(logging.WARNING)
    assert small.save({"pods": ("9", index(50))}) == "too_large"
    assert not path.exists()  # a stale index would invent DELETEs on the next start
    assert small.save({"pods": ("9", index(50))}) == "too_large"
    assert caplog.text.count("over the 200-byte bound") == 1  # said once


@pytest.mark.parametrize("text", ["{not json", '{"format": 2}', '{"format": 1, "scope": "/other", "resources": {}}'])
def test_an_index_file_that_is_not_ours_is_ignored_and_named(tmp_path: Path, text: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "idx"
    path.write_text(text)
    caplog.set_level(logging.WARNING)
    assert IndexFile(path, scope="/registry").load() == {}
    assert f"index file {path}: not a tattler-etcd index for /registry: resuming without it" in caplog.text
