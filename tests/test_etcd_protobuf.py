"""Built-in kinds as the APIServer stores them (protobuf, made with the codec), read from a real etcd.

Also the CLI: ``tattler-etcd run --etcd-endpoints URL --once`` writes one JSON line per entry.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import trio

from tattler_etcd import codec
from tattler_etcd.cli import main as cli_main
from tattler_etcd.data import ChangeType, Entry
from tattler_etcd.readers.etcd import EtcdReader
from tattler_etcd.stats import Counters
from tests.support.etcd import EtcdServer
from tests.support.etcd_reading import Tracker
from tests.support.reading import run_reader

pytestmark = pytest.mark.etcd

ADD, UPDATE, DELETE = ChangeType.ADD, ChangeType.UPDATE, ChangeType.DELETE


def stored(testdata: Path, kind: str, name: str, namespace: str | None, uid: str) -> dict[str, Any]:
    """An upstream fixture object, renamed, as etcd holds it (no resourceVersion)."""
    obj = json.loads((testdata / f"core.v1.{kind}.json").read_text())
    meta = obj["metadata"]
    meta.update(name=name, uid=uid)
    meta.pop("resourceVersion", None)
    if namespace:
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    return obj


@pytest.fixture
def cluster(etcd: EtcdServer, testdata: Path) -> dict[str, dict[str, Any]]:
    objs = {
        "/registry/pods/default/web": stored(testdata, "Pod", "web", "default", "uid-pod"),
        "/registry/minions/node-1": stored(testdata, "Node", "node-1", None, "uid-node"),
        "/registry/namespaces/default": stored(testdata, "Namespace", "default", None, "uid-ns"),
        "/registry/persistentvolumes/pv-1": stored(testdata, "PersistentVolume", "pv-1", None, "uid-pv"),
    }
    etcd.put_many([(k, codec.encode(v)) for k, v in objs.items()])
    return objs


def served(obj: dict[str, Any], revision: int) -> dict[str, Any]:
    """What the APIServer would serve: the stored object with resourceVersion = the key's mod_revision."""
    out = codec.decode(codec.encode(obj))
    out["metadata"]["resourceVersion"] = str(revision)
    return out


async def test_list_decodes_protobuf_lazily_and_faithfully(etcd: EtcdServer, cluster: dict[str, Any]) -> None:
    async with run_reader(EtcdReader(etcd.url, once=True), started=False) as h:
        await h.drain()
    assert sorted(h.state) == sorted(cluster)
    rev = etcd.revision()
    for e in h.entries:
        assert e.change is ADD and e.value is not None and not e.has_raw()  # identity only, until asked
        assert (e.uid, e.name) == (cluster[e.key]["metadata"]["uid"], cluster[e.key]["metadata"]["name"])
        assert e.raw == served(cluster[e.key], rev)
    assert {e.kind for e in h.entries} == {"Pod", "Node", "Namespace", "PersistentVolume"}


async def test_watch_update_and_delete_of_protobuf_objects(
    etcd: EtcdServer, cluster: dict[str, Any], testdata: Path,
) -> None:
    tracker = Tracker()
    reader = EtcdReader(etcd.url, resources=["pods"])
    send, recv = trio.open_memory_channel[list[Entry]](0)
    pod_key = "/registry/pods/default/web"
    changed = copy.deepcopy(cluster[pod_key])
    changed["metadata"]["labels"] = {"tier": "front"}
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracker.consume, recv)
            await nursery.start(reader.run, send, Counters())
            r_upd = await trio.to_thread.run_sync(etcd.put, pod_key, codec.encode(changed))
            r_del = await trio.to_thread.run_sync(etcd.delete, pod_key)
            await tracker.wait_for(lambda: pod_key not in tracker.state)
            nursery.cancel_scope.cancel()
    upd, dele = tracker.entries[-2:]
    assert (upd.change, upd.resource_version, dele.change, dele.resource_version) == (
        UPDATE, str(r_upd), DELETE, str(r_del))
    assert upd.raw["metadata"]["labels"] == {"tier": "front"}
    # The DELETE carries the last state (prev_kv), at the delete's revision.
    assert dele.raw == served(changed, r_del) and dele.uid == "uid-pod"


async def test_undecodable_protobuf_values_are_counted_and_named(
    etcd: EtcdServer, cluster: dict[str, Any], caplog: pytest.LogCaptureFixture,
) -> None:
    good = codec.encode(cluster["/registry/pods/default/web"])
    etcd.put_many([
        ("/registry/pods/default/truncated", good[:40]),
        ("/registry/pods/default/encrypted", b"k8s:enc:aescbc:v1:key1:\x8f\x02secretbytes"),
    ])
    caplog.set_level(logging.WARNING, logger="tattler_etcd")
    counters = Counters()
    async with run_reader(EtcdReader(etcd.url, resources=["pods"], once=True), started=False,
                          counters=counters) as h:
        await h.drain()
    assert list(h.state) == ["/registry/pods/default/web"]
    assert counters["reader.etcd.decode_errors"] == 2
    assert "/registry/pods/default/truncated" in caplog.text
    assert "/registry/pods/default/encrypted" in caplog.text
    assert "secretbytes" not in caplog.text


def test_cli_once_writes_one_json_line_per_entry(
    etcd: EtcdServer, cluster: dict[str, Any], tmp_path: Path,
) -> None:
    out = tmp_path / "out.jsonl"
    status = cli_main(["run", "--etcd-endpoints", etcd.url, "--resources", "pods,nodes", "--once",
                       "--batch-window", "0.05", "--output", str(out)])
    assert status == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    rev = etcd.revision()
    assert sorted((d["kind"], d["name"]) for d in lines) == [("Node", "node-1"), ("Pod", "web")]
    for d in lines:
        assert list(d) == ["change", "source", "uid", "apiVersion", "kind", "namespace", "name",
                           "resourceVersion", "object"]
        assert (d["change"], d["source"], d["resourceVersion"]) == ("add", "etcd", str(rev))
    pod = next(d for d in lines if d["kind"] == "Pod")
    assert pod["object"]["metadata"]["uid"] == "uid-pod" and pod["namespace"] == "default"


def test_cli_refuses_a_bad_endpoint_before_any_io(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["run", "--etcd-endpoints", "ftp://etcd:2379", "--once"]) == 2
    assert "give http://HOST:PORT" in capsys.readouterr().err


def test_cli_progress_line_only_for_a_long_list() -> None:
    import io

    from tattler_etcd.cli._run import _ListProgress

    now = [0.0]
    out = io.StringIO()
    progress = _ListProgress(out)
    progress._clock = lambda: now[0]
    progress._start = 0.0
    now[0] = 0.5
    progress(500)
    progress(500, done=True)
    assert out.getvalue() == ""  # a short list prints nothing
    progress = _ListProgress(out)
    progress._clock = lambda: now[0]
    progress._start = 0.0
    for t, n in ((1.0, 10_000), (1.1, 11_000), (2.0, 20_000)):
        now[0] = t
        progress(n)
    progress(25_000, done=True)
    assert out.getvalue() == (
        "\rlisted 10,000 objects (10,000/s)\rlisted 20,000 objects (10,000/s)"
        "\rlisted 25,000 objects (12,500/s)\n"
    )
