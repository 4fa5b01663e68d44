"""What the metric taps cost: the pipeline with ``runner.collector()`` beside the same pipeline without.

Run: ``python benchmarks/metrics.py [--entries 200000] [--repeat 3] [--protobuf]``

The entries and the pipeline are benchmarks/pipeline.py's (synthetic Pods,
4 null processors). Each repeat runs both, interleaved (without, then with),
on freshly built entries, so machine load hits both alike; best and median of
each are printed with their ratio. Also printed: the time one scrape
(``generate_latest``) takes after a run, which is paid per scrape, not per entry.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import prometheus_client
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import chunked, make_entries

from tattler_etcd.data import Entry
from tattler_etcd.pipeline import Batch, Policy, Runner
from tattler_etcd.readers.memory import MemoryReader


async def run(chunks: list[list[Entry]], processors: int, registry: prometheus_client.CollectorRegistry | None) -> Runner:
    runner = Runner(batch_window=5.0, batch_size=1000)
    runner.add_reader(MemoryReader(chunks))

    async def null(batch: Batch) -> None:
        pass

    for k in range(processors):
        runner.add_processor(f"null{k}", null, policy=Policy.BLOCK)
    if registry is not None:
        registry.register(runner.collector())
    await runner.run()
    return runner


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--pool", type=int, default=5_000)
    ap.add_argument("--chunk", type=int, default=500)
    ap.add_argument("--processors", type=int, default=4)
    ap.add_argument("--protobuf", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"{args.entries:,} Pod entries ({'protobuf' if args.protobuf else 'dict'}), chunks of {args.chunk}, "
          f"{args.processors} null processors, Python {sys.version.split()[0]}")
    without: list[float] = []
    with_: list[float] = []
    scrape = 0.0
    for _ in range(args.repeat):
        for rates, metrics in ((without, False), (with_, True)):
            chunks = chunked(make_entries(args.entries, args.pool, args.protobuf), args.chunk)
            registry = prometheus_client.CollectorRegistry() if metrics else None
            gc.collect()
            t0 = time.perf_counter()
            runner = trio.run(run, chunks, args.processors, registry)
            rates.append(args.entries / (time.perf_counter() - t0))
            assert runner.counters["processor.null0.entries"] == args.entries
            if registry is not None:
                t0 = time.perf_counter()
                text = prometheus_client.generate_latest(registry)
                scrape = time.perf_counter() - t0
                assert b"tattler_entries_in_total" in text
            del chunks, runner
    print(f"without collector  {max(without):>10,.0f} entries/s best, {statistics.median(without):,.0f} median")
    print(f"with collector     {max(with_):>10,.0f} entries/s best, {statistics.median(with_):,.0f} median")
    print(f"with / without     {statistics.median(with_) / statistics.median(without):.3f} (medians), "
          f"{max(with_) / max(without):.3f} (best)")
    print(f"one scrape         {scrape * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
