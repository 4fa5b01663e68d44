"""Start-up cost: ``import tattler_etcd``, ``tattler-etcd --version`` / ``--help``, ``run --once``, the codec's first use.

Each is a fresh interpreter, run alternately with the others N times; the
baseline of the same run is ``python -c pass``. ``run --once`` reads an
empty etcd (started here, on a free loopback port, stopped at the end) into
``/dev/null``: the time from the command's start to its exit when there is
nothing to read, so all of it is start (imports, flags, the reader's client,
the first requests). Figures are the CPU time of
the child (user + sys: less swayed by other processes than wall time) and its
wall time, min and median. With ``--against DIR`` every case also runs with
``PYTHONPATH=DIR`` (a checkout of another commit's ``tattler_etcd``, e.g.
``git archive main tattler_etcd | tar -x -C /tmp/base``, plus that checkout's
built ``tattler_etcd/**/*.so``), interleaved, so the
two trees meet the same load. Then the heaviest imports of ``--help``, from
``python -X importtime``.

    python benchmarks/startup.py [--runs 15] [--against /tmp/base] [--no-etcd | --etcd-url URL]

``--etcd-url URL`` runs the ``run --once`` case against that etcd instead (e.g.
one ``benchmarks/etcd_sync.py --data-dir`` loaded with Pods, started on its
data dir): the whole command, before and after, interleaved.

Not a test: nothing is asserted. Write ``uptime`` beside any figure you keep.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = {
    "python -c pass (baseline)": ["-c", "pass"],
    "import tattler_etcd": ["-c", "import tattler_etcd"],
    "tattler-etcd --version": ["-m", "tattler_etcd", "--version"],
    "tattler-etcd --help": ["-m", "tattler_etcd", "--help"],
    "codec first use (import + 1 decode)": [
        "-c",
        "from tattler_etcd import codec\n"
        "codec.decode(codec.encode({'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'a'}}))",
    ],
}

#: The ``run`` case, with the etcd URL filled in.
RUN_CASE = "tattler-etcd run --once (empty etcd)"


def run_args(url: str) -> list[str]:
    return ["-m", "tattler_etcd", "run", "--endpoints", url, "--resources", "pods", "--once", "--to", "/dev/null"]


def child_env(pythonpath: str | None) -> dict[str, str]:
    """The environment of a measured run: bytecode caches used and written, as in an installed package.

    (With ``PYTHONDONTWRITEBYTECODE`` set, every run compiles the package
    again: that measured the compiler, ~170 ms for the codec alone.)
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def run_once(args: list[str], pythonpath: str | None) -> tuple[float, float]:
    """(CPU ms, wall ms) of one fresh interpreter running ``args``."""
    env = child_env(pythonpath)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # From a neutral directory: the checkout's own tattler_etcd must not shadow --against.
    subprocess.run([sys.executable, *args], cwd="/", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return cpu, wall


def heaviest_imports(pythonpath: str | None, top: int) -> list[tuple[int, str]]:
    """The ``top`` imports of ``--help`` with the most cumulative microseconds, direct children of the root."""
    env = child_env(pythonpath)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tattler_etcd", "--help"], cwd="/", env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    rows = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2]
        depth = (len(name) - len(name.lstrip())) // 2
        if depth <= 1:
            rows.append((int(parts[1]), name.strip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--against", metavar="DIR", help="also run each case with PYTHONPATH=DIR, interleaved")
    ap.add_argument("--top", type=int, default=12, help="how many of --help's heaviest imports to list")
    ap.add_argument("--no-etcd", action="store_true", help="skip the run --once case (no etcd started)")
    ap.add_argument("--etcd-url", metavar="URL", help="run --once against this etcd (its pods), not an empty one")
    args = ap.parse_args()
    trees: list[tuple[str, str | None]] = [("this", None)]
    if args.against:
        trees.append(("against", str(Path(args.against).resolve())))
    etcd = None
    cases = dict(CASES)
    if args.etcd_url:
        cases["tattler-etcd run --once (pods of --etcd-url)"] = run_args(args.etcd_url)
    elif not args.no_etcd:
        from tests.support.etcd import EtcdServer

        etcd = EtcdServer()
        etcd.start()
        cases[RUN_CASE] = run_args(etcd.url)
    try:
        got = measure(cases, trees, args.runs)
    finally:
        if etcd is not None:
            etcd.close()
    print(f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; runs: {args.runs}; {sys.version.split()[0]}")
    for case in cases:
        for label, _ in trees:
            cpu = [c for c, _ in got[(case, label)]]
            wall = [w for _, w in got[(case, label)]]
            print(f"{case:38} {label:8} CPU min {min(cpu):6.1f} med {statistics.median(cpu):6.1f} ms | "
                  f"wall min {min(wall):6.1f} med {statistics.median(wall):6.1f} max {max(wall):6.1f} ms")
    if args.against:
        print("\nmedian wall, this / against:")
        for case in cases:
            this, other = (statistics.median(w for _, w in got[(case, t)]) for t in ("this", "against"))
            print(f"{case:38} {this:6.1f} / {other:6.1f} ms = {this / other:.2f}x")
    print(f"\nheaviest imports of --help ({trees[0][0]}), cumulative us, one run:")
    for us, name in heaviest_imports(trees[0][1], args.top):
        print(f"{us:9,d}  {name}")


def measure(cases: dict[str, list[str]], trees: list[tuple[str, str | None]],
            runs: int) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Every case on every tree, ``runs`` times, interleaved (the trees' order alternating)."""
    got: dict[tuple[str, str], list[tuple[float, float]]] = {(c, t): [] for c in cases for t, _ in trees}
    for _, path in trees:  # warm-up: writes the bytecode caches, not counted
        for case_args in cases.values():
            run_once(case_args, path)
    for i in range(runs):
        for case, case_args in cases.items():
            for label, path in trees if i % 2 == 0 else trees[::-1]:
                got[(case, label)].append(run_once(case_args, path))
    return got


if __name__ == "__main__":
    main()
