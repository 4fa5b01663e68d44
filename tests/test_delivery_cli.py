"""``tattler-etcd consume`` (and ``run --to nats://``) against a real nats-server."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
import trio

from tattler_etcd.cli import main
from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.delivery.nats import open_nats_processor
from tests.support.etcd import EtcdServer
from tests.support.etcd_reading import key
from tests.support.etcd_reading import obj as etcd_obj
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


@pytest.mark.etcd
def test_run_to_nats_then_consume_prints_the_state(etcd: EtcdServer, nats_server: NatsServer,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(5):
        etcd.put(key("pods", f"p{i}", "default"), etcd_obj("pods", f"p{i}", "default"))
    etcd.put(key("minions", "node.one"), etcd_obj("minions", "node.one"))
    etcd.delete(key("pods", "p4", "default"))
    url = nats_server.url + "?stream=changes&kv=state&policy=drop"
    assert main(["run", "--etcd-endpoints", etcd.url, "--resources", "pods,nodes", "--once",
                 "--to", url, "--to", "-"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 5
    assert main(["consume", nats_server.url + "?kv=state", "--once"]) == 0
    consumed = capsys.readouterr().out.splitlines()
    assert sorted(consumed) == sorted(printed)
    assert main(["consume", nats_server.url + "?stream=changes", "--stream", "--once", "--resources", "nodes"]) == 0
    assert [json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()] == ["node.one"]


@pytest.mark.etcd
def test_run_to_a_webhook(etcd: EtcdServer) -> None:
    received: list[tuple[str, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.headers["Content-Type"], body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    for i in range(3):
        etcd.put(key("pods", f"p{i}", "default"), etcd_obj("pods", f"p{i}", "default"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        hook = f"http://127.0.0.1:{server.server_address[1]}/hook?policy=block"
        assert main(["run", "--etcd-endpoints", etcd.url, "--resources", "pods", "--once", "--to", hook]) == 0
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    assert {ctype for ctype, _ in received} == {"application/cloudevents-batch+json"}
    events = [e for _, body in received for e in json.loads(body)]
    assert sorted(e["subject"] for e in events) == ["pods/default/p0", "pods/default/p1", "pods/default/p2"]
    assert all(e["type"] == "tattler-etcd.add" and e["data"]["change"] == "add" for e in events)


def test_to_options_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--to", "nats://127.0.0.1:1?policy=sometimes"]) == 2
    assert capsys.readouterr().err.endswith(
        "tattler-etcd: error: --to nats://127.0.0.1:1: policy must be block or drop, not 'sometimes'\n")
    assert main(["run", "--to", "https://h/x"]) == 2  # no source: the bundled recording, on a virtual clock
    assert capsys.readouterr().err.endswith(
        "tattler-etcd: error: --to https://h/x: needs a live source (--etcd-endpoints, --kubeconfig, "
        "--in-cluster): a replay runs on a virtual clock, on which network timeouts mean nothing\n")
    assert main(["run", "--to", "https://h/x?buffer=many"]) == 2
    assert "--to https://h/x: buffer must be a whole number of batches, not 'many'" in capsys.readouterr().err
