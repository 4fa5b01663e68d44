"""etcd reader: initial sync through the full pipeline vs the bare paged range (the transport floor).

Run: ``python benchmarks/etcd_sync.py [--pods 200000] [--repeat 3] [--page-size 500]
[--data-dir DIR] [--watch-rate 2000] [--watch-seconds 10] [--batch-window 0.1]``

It starts a real etcd (``/usr/bin/etcd``) on 127.0.0.1, loads N realistic Pods
as the APIServer stores them (protobuf made with ``codec.encode``, about 3 KB
each, under ``/registry/pods/<ns>/<name>``), then measures in this one run,
each in a fresh child process so peak RSS is that measurement's alone:

* **floor (httpx)**: the same paged range the reader does (pinned revision,
  ``last_key + \\0``), on the same ``httpx.AsyncClient`` under trio, each page
  parsed with ``json.loads`` and thrown away: no base64, no decoding, no pipeline;
* **floor (etcd3gw)**: the same range through ``etcd3gw.Etcd3Client.post``
  (``requests``, blocking): the floor as etcd3gw's own client gives it;
* **reader**: ``EtcdReader(once=True)`` into a memory channel, one task
  counting: the reader's own cost (base64, key parsing, ``codec.peek``,
  the index) over the floor;
* **sync**: ``EtcdReader(once=True)`` through the full :class:`Runner`
  (safety, preprocess, batching, routing) to a null processor, until the
  pipeline has drained: the figure the issue's target is about.

Then the watch: a writer process puts Pods at ``--watch-rate`` per second for
``--watch-seconds`` (several keep-alive connections), while a live reader feeds
the pipeline with ``--batch-window``; latency is processor receive time minus
the put's acknowledgement (one monotonic clock, shared by both processes).

``--cli`` adds the end-to-end row: ``tattler-etcd run --etcd-endpoints URL
--resources pods --once --to FILE`` run as a user runs it (a new process,
start to exit, every Pod written as a JSON line), beside the same floor.

Each row is the median of ``--repeat`` runs, the rows' runs interleaved (the
machine may be shared: a change in load then hits every row alike).

``--data-dir`` keeps the loaded etcd data between runs (loading 200,000 Pods
takes minutes on 2 cores); the same directory with the same ``--pods`` is reused.
"""

from __future__ import annotations

import argparse
import base64
import copy
import gc
import http.client
import json
import multiprocessing
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx
import trio

from tattler_etcd import codec
from tests.support.etcd import EtcdServer

PREFIX = b"/registry/pods/"
RANGE_END = b"/registry/pods0"
NAMESPACES = 50
#: Where the watch-latency run writes (a resource of its own, see watch_latency).
WATCHED = "benchpods.bench.example.com"
WATCHED_SEGMENT = "bench.example.com/benchpods"


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def make_pods(start: int, stop: int, prefix: str = "/registry/pods/") -> list[tuple[str, bytes]]:
    from codec import small_pod  # benchmarks/codec.py: the same realistic Pod (~3 KB protobuf)

    base = small_pod()
    out = []
    for i in range(start, stop):
        pod = copy.deepcopy(base)
        ns = f"ns-{i % NAMESPACES:02d}"
        meta = pod["metadata"]
        meta.update(name=f"web-{i:07d}", namespace=ns, uid=str(uuid.UUID(int=i + 1)))
        meta.pop("resourceVersion", None)
        pod["status"]["podIP"] = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        out.append((f"{prefix}{ns}/web-{i:07d}", codec.encode(pod)))
    return out


def _load_chunk(args: tuple[str, int, int]) -> int:
    url, start, stop = args
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    items = make_pods(start, stop)
    for i in range(0, len(items), 128):  # etcd's --max-txn-ops default
        ops = [{"request_put": {"key": b64(k.encode()), "value": b64(v)}} for k, v in items[i:i + 128]]
        conn.request("POST", "/v3/kv/txn", json.dumps({"success": ops}), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"load failed: {resp.status} {body[:200]!r}")
    conn.close()
    return stop - start


def load(etcd: EtcdServer, pods: int) -> float:
    t0 = time.perf_counter()
    chunk = 2000
    jobs = [(etcd.url, s, min(s + chunk, pods)) for s in range(0, pods, chunk)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        done = sum(pool.imap_unordered(_load_chunk, jobs))
    assert done == pods
    return time.perf_counter() - t0


def count_keys(etcd: EtcdServer) -> int:
    r = etcd.call("/v3/kv/range", {"key": b64(PREFIX), "range_end": b64(RANGE_END), "count_only": True})
    return int(r.get("count", 0))


# --- the measured runs (each in a fresh process) ----------------------------------------


async def floor_httpx(url: str, page_size: int) -> int:
    n = 0
    revision = 0
    key = PREFIX
    async with httpx.AsyncClient(timeout=60) as client:
        while True:
            doc: dict[str, Any] = {"key": b64(key), "range_end": b64(RANGE_END), "limit": page_size}
            if revision:
                doc["revision"] = revision
            resp = await client.post(url + "/v3/kv/range", content=json.dumps(doc).encode())
            page = json.loads(resp.content)
            revision = revision or int(page["header"]["revision"])
            kvs = page.get("kvs") or []
            n += len(kvs)
            if not page.get("more") or not kvs:
                return n
            key = base64.b64decode(kvs[-1]["key"]) + b"\0"


def floor_etcd3gw(url: str, page_size: int) -> int:
    import etcd3gw

    host, port = url.removeprefix("http://").split(":")
    client = etcd3gw.Etcd3Client(host=host, port=int(port), api_path="/v3/", timeout=60)
    n, revision, key = 0, 0, PREFIX
    while True:
        doc: dict[str, Any] = {"key": b64(key), "range_end": b64(RANGE_END), "limit": page_size}
        if revision:
            doc["revision"] = revision
        page = client.post(client.get_url("/kv/range"), json=doc)
        revision = revision or int(page["header"]["revision"])
        kvs = page.get("kvs") or []
        n += len(kvs)
        if not page.get("more") or not kvs:
            return n
        key = base64.b64decode(kvs[-1]["key"]) + b"\0"


async def reader_only(url: str, page_size: int) -> int:
    from tattler_etcd.readers.etcd import EtcdReader
    from tattler_etcd.stats import Counters

    n = 0
    send, recv = trio.open_memory_channel[list[Any]](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            EtcdReader(url, resources=["pods"], page_size=page_size, once=True, api_path="/v3/").run,
            send, Counters(),
        )
        async for chunk in recv:
            n += len(chunk)
    return n


async def sync(url: str, page_size: int) -> int:
    from tattler_etcd.pipeline import Runner
    from tattler_etcd.readers.etcd import EtcdReader

    count = 0

    async def null(batch: Any) -> None:
        nonlocal count
        count += len(batch.entries)

    runner = Runner(batch_window=5.0, batch_size=1000)
    runner.add_reader(EtcdReader(url, resources=["pods"], page_size=page_size, once=True, api_path="/v3/"))
    runner.add_processor("null", null)
    await runner.run()
    return count


def _child(what: str, url: str, page_size: int, conn: Any) -> None:
    # Imports are not part of any measurement.
    import etcd3gw  # noqa: F401

    import tattler_etcd.pipeline
    import tattler_etcd.readers.etcd  # noqa: F401

    gc.collect()
    u0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if what == "floor_httpx":
        n = trio.run(floor_httpx, url, page_size)
    elif what == "floor_etcd3gw":
        n = floor_etcd3gw(url, page_size)
    elif what == "reader":
        n = trio.run(reader_only, url, page_size)
    else:
        n = trio.run(sync, url, page_size)
    secs = time.perf_counter() - t0
    u = resource.getrusage(resource.RUSAGE_SELF)
    cpu = u.ru_utime + u.ru_stime - u0.ru_utime - u0.ru_stime
    conn.send((n, secs, cpu, u.ru_maxrss))


def measure(what: str, url: str, page_size: int) -> tuple[int, float, float, float]:
    """(objects, seconds, CPU seconds of the process, peak RSS MB) of one run in a fresh (spawned) process."""
    parent, child = multiprocessing.Pipe()
    p = multiprocessing.get_context("spawn").Process(target=_child, args=(what, url, page_size, child))
    p.start()
    n, secs, cpu, peak = parent.recv()
    p.join()
    return n, secs, cpu, peak / 1024


def measure_cli(url: str, args: argparse.Namespace) -> tuple[int, float, float, float]:
    """The command itself, in its own process, start to exit: every Pod as a JSON line in a file."""
    with tempfile.TemporaryDirectory(prefix="tattler-bench-cli-") as tmp:
        out = pathlib.Path(tmp) / "pods.jsonl"
        cmd = [sys.executable, "-m", "tattler_etcd", "run", "--etcd-endpoints", url, "--resources", "pods",
               "--once", "--page-size", str(args.page_size), "--to", str(out)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        secs = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"the command failed ({proc.returncode}): {' '.join(cmd)}")
        peak = usage.ru_maxrss / 1024
        cpu = usage.ru_utime + usage.ru_stime
        with open(out, "rb") as f:
            n = sum(1 for _ in f)
    return n, secs, cpu, peak


def cli_startup() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tattler_etcd", "--version"], check=True, capture_output=True)
    return time.perf_counter() - t0


# --- watch latency ----------------------------------------------------------------------


def _writer(url: str, rate: int, seconds: float, start_at: float, part: int, parts: int, conn: Any) -> None:
    """Put every ``parts``-th Pod on schedule (``rate``/s overall) from 4 keep-alive connections.

    Sends back key -> acknowledgement time (monotonic).
    """
    host, port = url.removeprefix("http://").split(":")
    total = int(rate * seconds)
    pods = make_pods(0, total, prefix=f"/registry/{WATCHED_SEGMENT}/")
    acks: dict[str, float] = {}
    lock = threading.Lock()
    threads = 4
    ours = list(range(part, total, parts))

    def run(t: int) -> None:
        c = http.client.HTTPConnection(host, int(port), timeout=30)
        for i in ours[t::threads]:
            k, v = pods[i]
            due = start_at + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            c.request("POST", "/v3/kv/put", json.dumps({"key": b64(k.encode()), "value": b64(v)}),
                      {"Content-Type": "application/json"})
            c.getresponse().read()
            now = time.monotonic()
            with lock:
                acks[k] = now
        c.close()

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(run, range(threads)))
    conn.send(acks)


async def watch_latency(url: str, rate: int, seconds: float, window: float) -> tuple[list[float], float]:
    from tattler_etcd.pipeline import Runner
    from tattler_etcd.readers.etcd import EtcdReader

    received: dict[str, float] = {}
    want = int(rate * seconds)
    done = trio.Event()

    async def proc(batch: Any) -> None:
        now = time.monotonic()
        for e in batch.entries:
            received[e.key] = now
        if len(received) >= want:
            done.set()

    runner = Runner(batch_window=window, batch_size=1000)
    # The same protobuf Pods, under a prefix of their own: the watch is measured
    # without first listing the N Pods of the sync measurement.
    runner.add_reader(EtcdReader(url, resources=[WATCHED], api_path="/v3/"))
    runner.add_processor("latency", proc)
    parts = 2  # writer processes: one Python process cannot put 2,000/s
    acks: dict[str, float] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        start_at = time.monotonic() + 2.0  # time to build the Pods before the first is due
        pipes, writers = [], []
        for part in range(parts):
            parent, child = multiprocessing.Pipe()
            w = multiprocessing.get_context("fork").Process(
                target=_writer, args=(url, rate, seconds, start_at, part, parts, child), daemon=True)
            w.start()
            pipes.append(parent)
            writers.append(w)
        with trio.move_on_after(seconds + 30):
            await done.wait()
        for parent in pipes:
            acks.update(await trio.to_thread.run_sync(parent.recv))
        for w in writers:
            w.join()
        nursery.cancel_scope.cancel()
    lat = [received[k] - t for k, t in acks.items() if k in received]
    achieved = len(acks) / (max(acks.values()) - min(acks.values()) or 1)
    return lat, achieved


# --- main -------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--page-size", type=int, default=500)
    ap.add_argument("--data-dir", help="keep etcd's data here between runs")
    ap.add_argument("--watch-rate", type=int, default=2000)
    ap.add_argument("--watch-seconds", type=float, default=10.0)
    ap.add_argument("--batch-window", type=float, default=0.1)
    ap.add_argument("--skip-watch", action="store_true")
    ap.add_argument("--cli", action="store_true",
                    help="add the end-to-end row: `tattler-etcd run --once --to FILE` as a user runs it")
    args = ap.parse_args()

    own = args.data_dir is None
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="tattler-bench-etcd-")
    etcd = EtcdServer(data_dir=data_dir, progress_notify="5s")
    etcd.start()
    try:
        have = count_keys(etcd)
        if have != args.pods:
            if have:
                raise SystemExit(f"{data_dir} holds {have} pods, not {args.pods}: use another --data-dir")
            secs = load(etcd, args.pods)
            print(f"loaded {args.pods:,} pods in {secs:.1f}s ({args.pods / secs:,.0f}/s)")
        size = sum(len(v) for _, v in make_pods(0, 100)) / 100
        print(f"etcd {etcd.url}: {args.pods:,} pods, ~{size:,.0f} B protobuf each, pages of {args.page_size}, "
              f"median of {args.repeat}, runs interleaved")
        whats = ["floor_httpx", "floor_etcd3gw", "reader", "sync"] + (["cli"] if args.cli else [])
        runs: dict[str, list[tuple[float, float, float]]] = {w: [] for w in whats}
        # Round-robin, so a change in the shared machine's load hits every row alike.
        for _ in range(args.repeat):
            for what in whats:
                n, secs, cpu, peak = measure_cli(etcd.url, args) if what == "cli" else measure(
                    what, etcd.url, args.page_size)
                if n != args.pods:
                    raise SystemExit(f"{what}: got {n} objects, wanted {args.pods}")
                runs[what].append((secs, cpu, peak))
        rows = {}
        for what in whats:
            times = sorted(r[0] for r in runs[what])
            med = statistics.median(times)
            cpu = statistics.median(r[1] for r in runs[what])
            rows[what] = (med, cpu, max(r[2] for r in runs[what]))
            print(f"{what:<14} median {med:6.2f} s (min {times[0]:.2f}, max {times[-1]:.2f}) "
                  f"{args.pods / med:>9,.0f} obj/s   CPU {cpu:5.2f} s   peak RSS {rows[what][2]:6.0f} MB")
        floor = rows["floor_httpx"][0]
        print(f"sync / floor (httpx)   = {rows['sync'][0] / floor:.2f}x  (target <= 1.25x; medians)")
        print(f"sync / floor (etcd3gw) = {rows['sync'][0] / rows['floor_etcd3gw'][0]:.2f}x")
        print(f"reader / floor (httpx) = {rows['reader'][0] / floor:.2f}x  (the reader alone, no pipeline)")
        print(f"sync peak RSS          = {rows['sync'][2]:.0f} MB  (target <= 400 MB)")
        if args.cli:
            start = statistics.median(cli_startup() for _ in range(args.repeat))
            print(f"cli / floor (httpx)    = {rows['cli'][0] / floor:.2f}x  (target <= 2.5x): the whole command, "
                  f"with its start ({start:.2f} s for `tattler-etcd --version`)")
        if not args.skip_watch:
            lat, achieved = trio.run(watch_latency, etcd.url, args.watch_rate, args.watch_seconds,
                                     args.batch_window)
            lat.sort()
            want = int(args.watch_rate * args.watch_seconds)
            p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
            print(f"watch: {len(lat):,}/{want:,} puts seen at {achieved:,.0f} writes/s, batch window "
                  f"{args.batch_window * 1000:.0f} ms: latency p50 {p(0.50):.1f} ms, p99 {p(0.99):.1f} ms, "
                  f"max {lat[-1] * 1000:.1f} ms, mean {statistics.fmean(lat) * 1000:.1f} ms "
                  f"(target p99 <= {args.batch_window * 1000 + 20:.0f} ms)")
    finally:
        etcd.stop()
        if own:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
