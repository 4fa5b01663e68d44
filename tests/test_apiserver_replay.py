"""The reader on an injected ``httpx`` transport, as a replay engine drives it (no socket, finite bodies)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio

from tattler_etcd.readers.apiserver import APIServerReader, ResourceRef
from tests.support.reading import run_reader

PODS = ResourceRef("", "v1", "pods", "Pod", True)
NODES = ResourceRef("", "v1", "nodes", "Node", False)


def _list(kind: str, rv: str, names: list[tuple[str | None, str]]) -> bytes:
    items = [{"metadata": {"name": n, **({"namespace": ns} if ns else {}), "uid": f"uid-{n}",
                           "resourceVersion": rv}} for ns, n in names]
    return json.dumps({"kind": f"{kind}List", "apiVersion": "v1", "metadata": {"resourceVersion": rv},
                       "items": items}).encode()


def _events(kind: str, events: list[tuple[str, str | None, str, str]]) -> bytes:
    lines = [json.dumps({"type": t, "object": {"kind": kind, "apiVersion": "v1", "metadata": {
        "name": n, **({"namespace": ns} if ns else {}), "uid": f"uid-{n}", "resourceVersion": rv}}})
        for t, ns, n, rv in events]
    return ("\n".join(lines) + "\n").encode()


#: What a recording holds: one list and one finite watch body per resource.
RECORDED = {
    ("/api/v1/pods", False): _list("Pod", "10", [("a", "p1"), ("b", "p2")]),
    ("/api/v1/pods", True): _events("Pod", [("MODIFIED", "a", "p1", "12"), ("DELETED", "b", "p2", "14")]),
    ("/api/v1/nodes", False): _list("Node", "11", [(None, "n1")]),
    ("/api/v1/nodes", True): _events("Node", [("ADDED", None, "n2", "13")]),
}


def transport(requests: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        watch = request.url.params.get("watch") == "1"
        body = RECORDED[(request.url.path, watch)]
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    return httpx.MockTransport(handle)


async def replay_once() -> tuple[list[tuple[str, str, str]], list[httpx.Request]]:
    requests: list[httpx.Request] = []
    http = httpx.AsyncClient(transport=transport(requests), base_url="http://recorded")
    reader = APIServerReader([PODS, NODES], http=http, follow=False, watch_list=False, content_type="json")
    with trio.fail_after(10):
        async with run_reader(reader) as h:
            await h.drain()
    await http.aclose()
    return [(e.change.value, e.key, e.resource_version) for e in h.entries], requests


async def test_replay_ends_with_the_recorded_bodies_in_a_fixed_order() -> None:
    got, requests = await replay_once()
    assert got == [
        ("add", "pods/a/p1", "10"), ("add", "pods/b/p2", "10"), ("add", "nodes/n1", "11"),
        ("update", "pods/a/p1", "12"), ("delete", "pods/b/p2", "14"), ("add", "nodes/n2", "13"),
    ]
    # one list and one watch per resource: the end of a body is the end, no reconnect
    assert [(r.url.path, r.url.params.get("watch")) for r in requests] == [
        ("/api/v1/pods", None), ("/api/v1/nodes", None), ("/api/v1/pods", "1"), ("/api/v1/nodes", "1")]
    assert requests[2].url.params["resourceVersion"] == "10"


async def test_replay_order_does_not_depend_on_scheduling() -> None:
    runs: list[Any] = []
    for _ in range(5):
        got, _requests = await replay_once()
        runs.append(got)
    assert all(run == runs[0] for run in runs)
