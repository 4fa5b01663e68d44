"""Peak RSS of ``tattler-etcd run --once`` over the APIServer in JSON, per 10,000 Pods.

Run: ``python benchmarks/apiserver_memory.py [--pods 20000] [--repeat 2] [--watch-list both|on|off]``

The fake APIServer (``tests/fake_apiserver``) runs in its own process with
the Pods already made (small realistic Pods, about 2 KB of JSON each). Each
measurement runs the CLI's ``run`` command (``main([...])``: kubeconfig,
``--content-type json``, ``--once``, output to /dev/null, the whole pipeline)
in a fresh spawned process, so its peak RSS (``ru_maxrss``) is its own. The
baseline is the same command over **0 Pods**, measured in the same run; the
figure is the growth over it, per 10,000 Pods. Best (lowest) of ``--repeat``.

Two initial-state paths: a streaming WatchList (the default when the server
has it) and the paged LIST (``--watch-list off`` on the server: the reader
falls back; a one-shot run lists with a consistent paged read).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pathlib
import resource
import sys
import tempfile
from typing import Any

import trio
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tests.fake_apiserver import FakeCluster, open_fake_apiserver  # noqa: E402
from tests.fake_apiserver.objects import make_pod  # noqa: E402


def serve(pods: int, watch_list: bool, conn: Any) -> None:
    async def main() -> None:
        c = FakeCluster()
        c.watch_list = watch_list
        c.create_many("pods", [make_pod(i, namespace=f"ns-{i % 20}") for i in range(pods)])
        async with open_fake_apiserver(c) as srv:
            conn.send(srv.url)
            await trio.to_thread.run_sync(conn.recv)

    trio.run(main)


def measure_child(kubeconfig: str, conn: Any) -> None:
    from tattler_etcd.cli import main

    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rc = main(["run", "--kubeconfig", kubeconfig, "--resources", "pods", "--content-type", "json", "--once",
               "--to", os.devnull])
    conn.send((rc, start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def measure(kubeconfig: str) -> tuple[float, float]:
    """(RSS after imports MB, peak RSS MB) of one CLI run in a fresh process."""
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=measure_child, args=(kubeconfig, child))
    proc.start()
    rc, start, peak = parent.recv()
    proc.join()
    if rc != 0:
        raise SystemExit(f"tattler-etcd run exited {rc}")
    return start / 1024, peak / 1024


def one_server(pods: int, watch_list: bool, repeat: int, tmp: pathlib.Path) -> float:
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("fork").Process(target=serve, args=(pods, watch_list, child), daemon=True)
    proc.start()
    url = parent.recv()
    try:
        kubeconfig = tmp / f"kubeconfig-{pods}"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": url}}],
            "users": [{"name": "u", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}],
        }))
        return min(measure(str(kubeconfig))[1] for _ in range(repeat))
    finally:
        parent.send("stop")
        proc.join(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--watch-list", choices=["both", "on", "off"], default="both")
    args = ap.parse_args()
    print(f"load: {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f}  pods: {args.pods:,}  best of {args.repeat}")
    modes = {"both": [True, False], "on": [True], "off": [False]}[args.watch_list]
    with tempfile.TemporaryDirectory() as d:
        for watch_list in modes:
            base = one_server(0, watch_list, args.repeat, pathlib.Path(d))
            peak = one_server(args.pods, watch_list, args.repeat, pathlib.Path(d))
            per10k = (peak - base) / args.pods * 10_000
            what = "WatchList" if watch_list else "paged LIST"
            print(f"{what:<11} baseline (0 Pods) peak {base:6.0f} MB   {args.pods:,} Pods peak {peak:6.0f} MB   "
                  f"growth {peak - base:5.0f} MB = {per10k:5.1f} MB per 10,000 Pods (target <= 30)")


if __name__ == "__main__":
    main()
