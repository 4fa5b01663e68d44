"""``tattler-etcd consume`` (and ``run --to nats://``) against a real nats-server."""

from __future__ import annotations

import json

import pytest
import trio

from tattler_etcd.cli import main
from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.delivery.nats import open_nats_processor
from tests.support.nats import NatsServer
from tests.support.pipeline_objects import obj

pytestmark = pytest.mark.nats


def publish(url: str, batches: list[list[Entry]]) -> None:
    async def go() -> None:
        async with open_nats_processor(url) as proc:
            for batch in batches:
                await proc(batch)

    trio.run(go)


def pod(change: ChangeType, name: str, rv: str, namespace: str = "ns") -> Entry:
    return Entry.from_dict(obj("Pod", name=name, rv=rv, namespace=namespace), change=change,
                           source=SourceType.ETCD)


def test_consume_prints_the_state_and_the_stream(nats_server: NatsServer,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    publish(nats_server.url, [[pod(ChangeType.ADD, "a", "1"), pod(ChangeType.ADD, "b", "2", "other")],
                              [pod(ChangeType.UPDATE, "a", "3")]])
    assert main(["consume", nats_server.url, "--once"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted((d["name"], d["change"], d["resourceVersion"]) for d in lines) == [
        ("a", "update", "3"), ("b", "add", "2")]
    assert lines[0] == json.loads(pod(ChangeType.UPDATE, "a", "3").to_json()) or lines[1]["name"] == "a"

    assert main(["consume", nats_server.url, "--once", "--namespace", "other", "--resources", "pods"]) == 0
    assert [json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()] == ["b"]

    assert main(["consume", nats_server.url, "--once", "--stream", "--from-sequence", "2"]) == 0
    assert [(d["name"], d["change"]) for d in map(json.loads, capsys.readouterr().out.splitlines())] == [
        ("b", "add"), ("a", "update")]


def test_consume_bad_input(nats_server: NatsServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["consume", "http://127.0.0.1:1"]) == 2
    assert capsys.readouterr().err == "tattler-etcd: error: http://127.0.0.1:1: not a nats://HOST:PORT URL\n"
    assert main(["consume", nats_server.url + "?kv=nope", "--once"]) == 2
    assert capsys.readouterr().err == f"tattler-etcd: error: nats {nats_server.url}: no KV bucket 'nope'\n"
    assert main(["consume", nats_server.url, "--since", "yesterday"]) == 2
    assert "--since: not an ISO 8601 time: 'yesterday'" in capsys.readouterr().err
