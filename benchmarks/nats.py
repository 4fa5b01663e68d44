"""Delivery to NATS JetStream: entries/s through the Runner to a stream and a KV bucket, beside a floor.

Run: ``python benchmarks/nats.py [--entries 20000] [--repeat 3] [--batch 1000]``

Starts its own ``nats-server -js`` (a free loopback port, a temporary store)
and measures, alternately, in the same run:

* floor: plain nats-py publishing the same payloads (each entry's JSON, made
  before the clock starts) to a stream and to a KV bucket, pipelined
  (``publish_async``, the acknowledgements of each ``--batch`` awaited
  together): what the server and the client library can do here. Run twice:
  on a plain ``asyncio.run`` loop, and under trio-asyncio as the processor
  runs it (both ratios are printed; the first shows whether trio-asyncio itself
  costs anything);
* raw: plain nats-py the way the processor publishes, ``publish(reply=...)``
  on one inbox subscription that counts the acknowledgements, no future per
  message: the floor for the technique, without the pipeline;
* processor: :class:`NatsProcessor` called on the batches directly (what
  the processor costs, without the Runner's stages);
* pipeline: the same entries through a :class:`Runner` (``MemoryReader`` ->
  safety -> batching -> routing) to :class:`NatsProcessor`, which makes the
  JSON, the subjects, keys and headers itself.

Each run writes to a fresh stream and bucket (file storage, as the processor
makes them). The ratio pipeline/floor is the figure (target: at least 0.7).
"""

from __future__ import annotations

import argparse
import gc
import pathlib
import statistics
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
# This file is named nats.py: its own folder must not be on the path, or ``import nats`` finds it.
sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

import trio
import trio_asyncio

from benchmarks.pipeline import make_entries
from tattler_etcd.data import Entry
from tattler_etcd.delivery.nats import NatsOptions, open_nats_processor
from tattler_etcd.delivery.subjects import change_id, kv_key
from tattler_etcd.pipeline import Runner
from tattler_etcd.readers.memory import MemoryReader
from tests.support.nats import NatsServer


def _floor_coroutine(url: str, entries: list[Entry], batch: int, name: str) -> Any:
    """The floor's asyncio coroutine: plain nats-py, pipelined, timed from the first publish."""
    import asyncio

    import nats
    from nats.js.api import StorageType, StreamConfig

    stream, bucket = name, f"{name}-state"
    msgs = [(f"{stream}.{kv_key(e)}", f"$KV.{bucket}.{kv_key(e)}", e.to_json_bytes(), {
        "Nats-Msg-Id": change_id(e), "Tattler-Change": e.change.value, "Tattler-Kind": e.kind,
        "Tattler-Uid": e.uid, "Tattler-Resource-Version": e.resource_version}) for e in entries]

    async def go() -> float:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name=stream, subjects=[f"{stream}.>"], storage=StorageType.FILE,
                                             duplicate_window=120.0))
            await js.create_key_value(bucket=bucket, history=1)
            t0 = time.perf_counter()
            for i in range(0, len(msgs), batch):
                futures = []
                for subject, kv_subject, payload, headers in msgs[i:i + batch]:
                    futures.append(await js.publish_async(subject, payload, headers=dict(headers)))
                    futures.append(await js.publish_async(kv_subject, payload))
                await asyncio.gather(*futures)
            return time.perf_counter() - t0
        finally:
            await nc.close()

    return go


def _raw_coroutine(url: str, entries: list[Entry], batch: int, name: str) -> Any:
    """Plain nats-py without a future per message: ``publish(reply=...)``, one inbox subscription counting."""
    import asyncio

    import nats
    from nats.js.api import StorageType, StreamConfig

    stream, bucket = name, f"{name}-state"
    msgs = [(f"{stream}.{kv_key(e)}", f"$KV.{bucket}.{kv_key(e)}", e.to_json_bytes(), {
        "Nats-Msg-Id": change_id(e), "Tattler-Change": e.change.value, "Tattler-Kind": e.kind,
        "Tattler-Uid": e.uid, "Tattler-Resource-Version": e.resource_version}) for e in entries]

    async def go() -> float:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name=stream, subjects=[f"{stream}.>"], storage=StorageType.FILE,
                                             duplicate_window=120.0))
            await js.create_key_value(bucket=bucket, history=1)
            inbox = nc.new_inbox()
            waiting = 0
            done = asyncio.Event()

            async def on_reply(msg: Any) -> None:
                nonlocal waiting
                assert b'"error"' not in msg.data, msg.data
                waiting -= 1
                if waiting == 0:
                    done.set()

            await nc.subscribe(inbox + ".*", cb=on_reply)
            t0 = time.perf_counter()
            n = 0
            for i in range(0, len(msgs), batch):
                part = msgs[i:i + batch]
                waiting = 2 * len(part)
                done.clear()
                for subject, kv_subject, payload, headers in part:
                    await nc.publish(subject, payload, reply=f"{inbox}.{n}", headers=headers)
                    await nc.publish(kv_subject, payload, reply=f"{inbox}.{n + 1}")
                    n += 2
                await done.wait()
            return time.perf_counter() - t0
        finally:
            await nc.close()

    return go


async def floor_raw(url: str, entries: list[Entry], batch: int, run: int) -> float:
    """Seconds for plain nats-py, one reply inbox and no futures, under trio-asyncio."""
    async with trio_asyncio.open_loop() as loop:
        return float(await trio_asyncio.aio_as_trio(_raw_coroutine(url, entries, batch, f"raw{run}"),
                                                    loop=loop)())


async def floor(url: str, entries: list[Entry], batch: int, run: int) -> float:
    """Seconds for plain nats-py, under trio-asyncio as the processor runs it, to publish the entries."""
    async with trio_asyncio.open_loop() as loop:
        return float(await trio_asyncio.aio_as_trio(_floor_coroutine(url, entries, batch, f"floor{run}"),
                                                    loop=loop)())


def floor_asyncio(url: str, entries: list[Entry], batch: int, run: int) -> float:
    """The same on a plain asyncio loop (no trio): does trio-asyncio cost anything here?"""
    import asyncio

    return float(asyncio.run(_floor_coroutine(url, entries, batch, f"plain{run}")()))


async def pipeline(url: str, entries: list[Entry], batch: int, run: int) -> tuple[float, Any]:
    """Seconds for the Runner to deliver the entries to a fresh stream and bucket."""
    options = NatsOptions(url=url, stream=f"tattler{run}", bucket=f"tattler{run}-state", prefix=f"tattler{run}")
    async with open_nats_processor(options) as proc:
        runner = Runner(batch_window=5.0, batch_size=batch)
        runner.add_reader(MemoryReader([entries[i:i + 500] for i in range(0, len(entries), 500)]))
        runner.add_processor("nats", proc)
        t0 = time.perf_counter()
        await runner.run()
        elapsed = time.perf_counter() - t0
    assert proc.published == len(entries) and proc.failed == 0 and proc.skipped == 0, vars(proc)
    return elapsed, proc


async def warm_up() -> None:
    """One small run through the pipeline, untimed: imports and first-use set-up are not the figure."""
    async def null(batch: Any) -> None:
        pass

    runner = Runner(batch_window=0.01)
    runner.add_reader(MemoryReader(make_entries(100, 100, False)))
    runner.add_processor("null", null)
    await runner.run()


async def processor_alone(url: str, entries: list[Entry], batch: int, run: int) -> float:
    """Seconds for NatsProcessor called on the batches directly (no Runner: no safety, no batching)."""
    options = NatsOptions(url=url, stream=f"alone{run}", bucket=f"alone{run}-state", prefix=f"alone{run}")
    async with open_nats_processor(options) as proc:
        t0 = time.perf_counter()
        for i in range(0, len(entries), batch):
            await proc(entries[i:i + batch])
        elapsed = time.perf_counter() - t0
    assert proc.published == len(entries), vars(proc)
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3, help="floor/pipeline pairs, alternating (default: 3)")
    ap.add_argument("--batch", type=int, default=1000, help="entries per batch, both sides (default: 1000)")
    args = ap.parse_args()

    server = NatsServer()
    server.start()
    try:
        import importlib.metadata

        sample = make_entries(1, 1, False)[0].to_json_bytes()
        print(f"{args.entries:,} Pod entries ({len(sample):,} bytes of JSON each, 2 containers x 5 env vars), "
              f"batches of {args.batch}, each to a stream and a KV bucket (file storage); "
              f"nats-server at {server.url}, nats-py {importlib.metadata.version('nats-py')}, Python {sys.version.split()[0]}")
        trio.run(warm_up)
        floors: list[float] = []
        plains: list[float] = []
        raws: list[float] = []
        alones: list[float] = []
        pipes: list[float] = []
        for r in range(args.repeat):
            entries = make_entries(args.entries, 5_000, False)
            gc.collect()
            plains.append(args.entries / floor_asyncio(server.url, entries, args.batch, r))
            entries = make_entries(args.entries, 5_000, False)
            gc.collect()
            floors.append(args.entries / trio.run(floor, server.url, entries, args.batch, r))
            entries = make_entries(args.entries, 5_000, False)
            gc.collect()
            raws.append(args.entries / trio.run(floor_raw, server.url, entries, args.batch, r))
            entries = make_entries(args.entries, 5_000, False)
            gc.collect()
            alones.append(args.entries / trio.run(processor_alone, server.url, entries, args.batch, r))
            entries = make_entries(args.entries, 5_000, False)
            gc.collect()
            elapsed, _ = trio.run(pipeline, server.url, entries, args.batch, r)
            pipes.append(args.entries / elapsed)
            print(f"  run {r + 1}: asyncio {plains[-1]:,.0f}/s, floor {floors[-1]:,.0f}/s, raw {raws[-1]:,.0f}/s, "
                  f"processor {alones[-1]:,.0f}/s, "
                  f"pipeline {pipes[-1]:,.0f}/s ({pipes[-1] / floors[-1]:.2f}x floor, {pipes[-1] / raws[-1]:.2f}x raw)")
    finally:
        server.close()
    print(f"asyncio   nats-py on plain asyncio.run      {max(plains):>9,.0f} entries/s best, "
          f"{statistics.median(plains):,.0f} median")
    print(f"floor     nats-py under trio-asyncio         {max(floors):>9,.0f} entries/s best, "
          f"{statistics.median(floors):,.0f} median")
    print(f"raw       nats-py publish(reply=), 1 inbox   {max(raws):>9,.0f} entries/s best, "
          f"{statistics.median(raws):,.0f} median")
    print(f"processor NatsProcessor, no Runner           {max(alones):>9,.0f} entries/s best, "
          f"{statistics.median(alones):,.0f} median")
    print(f"pipeline  Runner -> NatsProcessor           {max(pipes):>9,.0f} entries/s best, "
          f"{statistics.median(pipes):,.0f} median")
    for label, base in (("floor", floors), ("asyncio", plains), ("raw", raws)):
        ratios = [p / f for p, f in zip(pipes, base, strict=True)]
        print(f"ratio     pipeline / {label:<8} per run        {statistics.median(ratios):.2f}x median "
              f"(range {min(ratios):.2f}-{max(ratios):.2f}; target >= 0.7)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
