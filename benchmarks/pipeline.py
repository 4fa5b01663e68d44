"""Pipeline throughput: synthetic Pods through safety -> batching -> routing -> 4 null processors.

Run: ``python benchmarks/pipeline.py [--entries 500000] [--chunk 500] [--protobuf]``

Prints entries/s for the pipeline beside a baseline measured in the same run:
the same reader sending the same chunks over one bare trio memory channel to
one task that only counts them. The ratio is what the stages cost.

The entries are built before the clock starts: 500,000 Entry objects with
unique UIDs over a pool of distinct Pod dicts (2 containers x 5 env vars), so
the figure is the pipeline's and not the generator's. ``--applied-every N``
gives every Nth Pod a last-applied annotation (which the stage parses and
rewrites as JSON); Pods made by controllers have none, so the default is 0. Scrubbing is done in place, so every run redacts the
same number of values. ``--protobuf`` gives the entries protobuf bytes
(``codec.encode``) instead of dicts, to measure the safety stage's bytes path.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from typing import Any

import trio

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.pipeline import Batch, Policy, Runner
from tattler_etcd.readers.memory import MemoryReader
from tattler_etcd.stats import Counters


def make_pod(i: int, applied_every: int = 0) -> dict[str, Any]:
    def container(c: int) -> dict[str, Any]:
        return {
            "name": f"app-{c}",
            "image": f"registry.example.com/team/app-{c}:1.{i % 50}.0",
            "ports": [{"containerPort": 8080 + c, "protocol": "TCP"}],
            "env": [{"name": f"VAR_{k}", "value": f"value-{i}-{c}-{k}"} for k in range(5)],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            "imagePullPolicy": "IfNotPresent",
        }

    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"app-{i}",
            "namespace": f"ns-{i % 20}",
            "uid": f"00000000-0000-0000-0000-{i:012d}",
            "resourceVersion": str(1000 + i),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": f"app-{i % 100}", "tier": "web"},
            "annotations": {},
        },
        "spec": {
            "containers": [container(0), container(1)],
            "restartPolicy": "Always",
            "nodeName": f"node-{i % 30}",
        },
        "status": {"phase": "Running", "podIP": f"10.0.{i % 250}.{i % 200}"},
    }
    if applied_every and i % applied_every == 0:
        applied = {k: v for k, v in pod.items() if k != "status"}
        pod["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = (
            json.dumps(applied, separators=(",", ":")) + "\n"
        )
    return pod


def make_entries(n: int, pool: int, protobuf: bool, applied_every: int = 0) -> list[Entry]:
    pods = [make_pod(i, applied_every) for i in range(pool)]
    encoded: list[bytes] = []
    if protobuf:
        from tattler_etcd import codec

        encoded = [codec.encode(p) for p in pods]
    entries = []
    for i in range(n):
        j = i % pool
        p = pods[j]
        kw: dict[str, Any] = {"value": encoded[j]} if protobuf else {"raw": p}
        entries.append(Entry(
            change=ChangeType.ADD, source=SourceType.ETCD, uid=f"uid-{i}", api_version="v1", kind="Pod",
            namespace=p["metadata"]["namespace"], name=p["metadata"]["name"], resource_version=str(i + 1),
            **kw,
        ))
    return entries


def chunked(entries: list[Entry], size: int) -> list[list[Entry]]:
    return [entries[i:i + size] for i in range(0, len(entries), size)]


async def baseline(chunks: list[list[Entry]]) -> int:
    seen = 0
    send, receive = trio.open_memory_channel[list[Entry]](0)

    async def consume() -> None:
        nonlocal seen
        async with receive:
            async for chunk in receive:
                seen += len(chunk)

    async with trio.open_nursery() as n:
        n.start_soon(consume)
        await MemoryReader(chunks).run(send, Counters())
    return seen


async def pipeline(chunks: list[list[Entry]], processors: int) -> Runner:
    runner = Runner(batch_window=5.0, batch_size=1000)
    runner.add_reader(MemoryReader(chunks))

    async def null(batch: Batch) -> None:
        pass

    for k in range(processors):
        runner.add_processor(f"null{k}", null, policy=Policy.BLOCK)
    await runner.run()
    return runner


async def one_per_hop(entries: list[Entry]) -> int:
    """The same channel, one entry per send: what the pipeline would pay without chunks."""
    seen = 0
    send, receive = trio.open_memory_channel[Entry](0)

    async def consume() -> None:
        nonlocal seen
        async with receive:
            async for _ in receive:
                seen += 1

    async with trio.open_nursery() as n:
        n.start_soon(consume)
        async with send:
            for entry in entries:
                await send.send(entry)
    return seen


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    gc.collect()
    t0 = time.perf_counter()
    result = trio.run(fn, *args)
    return time.perf_counter() - t0, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=500_000)
    ap.add_argument("--pool", type=int, default=5_000, help="distinct Pod objects behind the entries")
    ap.add_argument("--chunk", type=int, default=500, help="entries per reader chunk")
    ap.add_argument("--processors", type=int, default=4)
    ap.add_argument("--protobuf", action="store_true", help="entries hold protobuf bytes (needs the codec)")
    ap.add_argument("--applied-every", type=int, default=0, metavar="N",
                    help="give every Nth Pod a last-applied annotation (default: none)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="pipeline runs, each on freshly built entries; best and median reported (default: 3)")
    args = ap.parse_args()

    form = "protobuf" if args.protobuf else "dict"
    applied = f", last-applied on 1 in {args.applied_every}" if args.applied_every else ""
    print(f"{args.entries:,} Pod entries ({form}, 2 containers x 5 env vars{applied}), chunks of {args.chunk}, "
          f"{args.processors} null processors, Python {sys.version.split()[0]}, trio {trio.__version__}")

    rates: list[float] = []
    t_base = t_hop = 0.0
    hop_n = min(args.entries, 100_000)
    c = Counters()
    for r in range(args.repeat):
        entries = make_entries(args.entries, args.pool, args.protobuf, args.applied_every)
        chunks = chunked(entries, args.chunk)
        if r == 0:
            t_base, seen = timed(baseline, chunks)
            assert seen == args.entries, seen
            t_hop, seen = timed(one_per_hop, entries[:hop_n])
            assert seen == hop_n, seen
        t_pipe, runner = timed(pipeline, chunks, args.processors)
        c = runner.counters
        for k in range(args.processors):
            assert c[f"processor.null{k}.entries"] == args.entries, c.snapshot()
        assert c["safety.dropped.unsafe"] == 0, c.snapshot()
        rates.append(args.entries / t_pipe)
        del entries, chunks, runner

    print(f"baseline  channel -> channel, chunks       {args.entries / t_base:>12,.0f} entries/s")
    print(f"baseline  channel -> channel, 1 per hop    {hop_n / t_hop:>12,.0f} entries/s  ({hop_n:,} entries)")
    print(f"pipeline  safety -> batching -> routing    {max(rates):>12,.0f} entries/s best, "
          f"{statistics.median(rates):,.0f} median of {len(rates)}")
    print(f"          {c['safety.redacted']:,} values redacted, {c['batching.batches']:,} batches per run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
