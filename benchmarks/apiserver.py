"""APIServer reader throughput: the same Pods served by the fake APIServer in JSON and in protobuf.

Run: ``python benchmarks/apiserver.py [--pods 20000] [--repeat 3] [--page-size 500]``

The fake APIServer (``tests/fake_apiserver``) runs in its own process (so it
does not take the client's GIL), on 127.0.0.1, with every list response
encoded and cached before the clock starts, so the figures are the client's,
not the fake's. For each
wire format, best of ``--repeat`` runs:

* **baseline**: one bare ``httpx`` GET per page with the same paging, the
  bodies read and thrown away: the transport's ceiling, measured in this run;
* **reader**: ``APIServerReader(once=True)`` into a memory channel, one task
  counting entries: entries carry their identity (uid, name, namespace,
  resourceVersion); protobuf items stay undecoded;
* **pipeline**: the same reader through the :class:`Runner` (safety, batching,
  routing) to one processor that counts: end to end, as the CLI runs it;
* **+ dict**: like *reader*, and then every entry's ``raw`` dict is built (a
  consumer that needs the whole object in Python).

Each figure is also given per CPU-second of the client process: on a shared
machine the wall-clock figure moves with everybody else's load, the CPU one
much less.

Then the same through a streaming WatchList (``sendInitialEvents``): one
request, the Pods as watch events (JSON lines, or length-prefixed protobuf
frames), ending at the ``k8s.io/initial-events-end`` bookmark.

The reader lists with a consistent read (``resourceVersion=""``), the paged
path a big cluster takes; the first list of client-go (``resourceVersion=0``)
is one unpaged response from the APIServer's cache.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import trio

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tattler_etcd.data import Entry
from tattler_etcd.pipeline import Runner
from tattler_etcd.readers.apiserver import APIServerReader, ClusterConfig, ResourceRef
from tattler_etcd.stats import Counters
from tests.fake_apiserver import FakeCluster, open_fake_apiserver
from tests.fake_apiserver.objects import make_pod

PODS = ResourceRef("", "v1", "pods", "Pod", True)
ACCEPT = {"json": "application/json", "protobuf": "application/vnd.kubernetes.protobuf, application/json"}


def make_reader(url: str, fmt: str, page_size: int, watch_list: bool = False) -> APIServerReader:
    return APIServerReader([PODS], config=ClusterConfig(url), content_type=fmt,  # type: ignore[arg-type]
                           page_size=page_size, watch_list=watch_list, once=True, consistent_first_list=True)


def serve(pods: int, conn: Any) -> None:
    """The fake, in a child process: build the pods, serve until told to stop."""

    async def main() -> None:
        c = FakeCluster()
        c.create_many("pods", [make_pod(i, namespace=f"ns-{i % 20}") for i in range(pods)])
        async with open_fake_apiserver(c) as srv:
            conn.send(srv.url)
            await trio.to_thread.run_sync(conn.recv)

    trio.run(main)


async def _paged_urls(url: str, fmt: str, page_size: int, fetch: Callable[..., Any]) -> int:
    n = 0
    token = ""
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        while True:
            params = {"limit": str(page_size)}
            if token:
                params["continue"] = token
            r = await http.get("/api/v1/pods", params=params, headers={"Accept": ACCEPT[fmt]})
            r.raise_for_status()
            n, token = fetch(r.content, fmt, n)
            if not token:
                return n


def _count_page(body: bytes, fmt: str, n: int) -> tuple[int, str]:
    # The baseline must learn the continue token; it reads only that.
    if fmt == "json":
        import json

        doc = json.loads(body)
        return n + len(doc["items"]), doc["metadata"].get("continue", "")
    from tattler_etcd import codec

    meta, items = codec.split_list(body)
    return n + len(items), str(meta.get("continue") or "")


async def baseline(url: str, fmt: str, page_size: int) -> int:
    return await _paged_urls(url, fmt, page_size, _count_page)


async def reader_only(url: str, fmt: str, page_size: int, build_dicts: bool = False,
                      watch_list: bool = False) -> int:
    reader = make_reader(url, fmt, page_size, watch_list)
    send, recv = trio.open_memory_channel[list[Entry]](0)
    n = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.run, send, Counters())
        async for chunk in recv:
            n += len(chunk)
            if build_dicts:
                for e in chunk:
                    e.raw  # noqa: B018 - building it is the point
    return n


async def pipeline(url: str, fmt: str, page_size: int, watch_list: bool = False) -> int:
    reader = make_reader(url, fmt, page_size, watch_list)
    count = 0

    async def proc(batch: Any) -> None:
        nonlocal count
        count += len(batch.entries)

    runner = Runner(batch_window=0.5, batch_size=1000)
    runner.add_reader(reader)
    runner.add_processor("count", proc)
    await runner.run()
    return count


def timed(fn: Callable[..., Any], *args: Any, repeat: int) -> tuple[float, float, int]:
    """Best wall time, best CPU time of this process (the client's alone), objects."""
    best = best_cpu = float("inf")
    n = 0
    for _ in range(repeat):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        n = trio.run(fn, *args)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--page-size", type=int, default=500)
    args = ap.parse_args()

    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("fork").Process(target=serve, args=(args.pods, child), daemon=True)
    proc.start()
    try:
        url = parent.recv()
        # Warm the fake's response cache (encoding is the fake's cost, not ours).
        for fmt in ("json", "protobuf"):
            trio.run(baseline, url, fmt, args.page_size)
            trio.run(reader_only, url, fmt, args.page_size, False, True)
        print(f"{args.pods} pods, pages of {args.page_size}, best of {args.repeat}; "
              "objects/s of wall time [objects per CPU-second of the client process]")
        print(f"{'path':<10} {'format':<9} {'baseline':>20} {'reader':>20} {'pipeline':>20} {'+ dict':>20}")
        for path, wl in (("LIST", False), ("WatchList", True)):
            for fmt in ("json", "protobuf"):
                row = []
                runs = ((reader_only, (False, wl)), (pipeline, (wl,)), (reader_only, (True, wl)))
                if not wl:
                    runs = ((baseline, ()), *runs)
                for fn, extra in runs:
                    secs, cpu, n = timed(fn, url, fmt, args.page_size, *extra, repeat=args.repeat)
                    if n != args.pods:
                        raise SystemExit(f"{fmt} {fn.__name__}: got {n} objects, wanted {args.pods}")
                    row.append(f"{n / secs:>9,.0f} [{n / cpu:>8,.0f}]")
                if wl:
                    row.insert(0, f"{'-':>20}")
                print(f"{path:<10} {fmt:<9} " + " ".join(row))
    finally:
        parent.send("stop")
        proc.join(30)


if __name__ == "__main__":
    main()
