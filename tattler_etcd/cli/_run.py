"""``tattler-etcd run``: read from one source, print one JSON line per entry.

Sources, first match wins: ``--replay FILE``; ``--endpoints`` (etcd);
``--kubeconfig`` or ``--context`` (the APIServer); ``--in-cluster``; then the
environment: ``ETCDCTL_ENDPOINTS`` (etcd) or ``KUBECONFIG`` (the APIServer).
None of them: the bundled recording, with a notice saying how to read a real
cluster.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from tattler_etcd.cli._common import (
    DEFAULT_RESOURCES,
    HOW_TO_READ_A_CLUSTER,
    add_reader_arguments,
    apply_environment,
    choose_source,
    connect_timeout,
    etcd_endpoints,
    etcd_options,
    kubeconfig_path,
    parse_resources,
)
from tattler_etcd.cli._logging import notice
from tattler_etcd.cli._output import add_output_arguments, resolve_output
from tattler_etcd.cli._redact import add_redaction_arguments, redaction_rules
from tattler_etcd.errors import ConfigError
from tattler_etcd.service.address import parse_address

if TYPE_CHECKING:
    from tattler_etcd.pipeline import Runner

# What runs the pipeline is imported by the function that needs it, not here:
# the parser (every `tattler-etcd --help`, `--version` and other subcommand)
# would pay for trio, the pipeline and the codec (~0.3 s), and a run against
# etcd for the APIServer reader (~60 ms) and prometheus-client (~25 ms).
# tests/test_cli_imports.py checks what `--version` and `run` import.


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run the pipeline and print entries as JSON lines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = add_reader_arguments(p, endpoints_help="read straight from etcd's HTTP gateway")
    g.source.add_argument("--replay", metavar="FILE", help="replay a recorded cassette (no cluster needed)")
    p.add_argument("--once", action="store_true", help="stop after the initial list has been delivered")
    add_output_arguments(p, formats=RUN_FORMATS, to_help=(
        "where the entries go, repeatable: - (stdout, the default), a PATH, or SCHEME://... "
        "(see docs/cli.md); -o FILE, the old spelling, still works"))
    g.etcd.add_argument("--revision-file", metavar="FILE",
                        help="remember the last revision here; resume from it on start")
    g.apiserver.add_argument("--bookmark-file", metavar="FILE",
                             help="remember resourceVersions here; resume from them on start")
    pipe = p.add_argument_group("pipeline")
    pipe.add_argument("--batch-window", type=float, default=5.0, metavar="SECONDS", help="batch time window (default: 5)")
    pipe.add_argument("--batch-size", type=int, default=1000, metavar="N", help="batch size limit (default: 1000)")
    pipe.add_argument("--relist-interval", type=float, default=None, metavar="SECONDS",
                      help="re-list every so often, emitting snapshot and delete entries (default: never)")
    pipe.add_argument("--watch-timeout", type=float, default=300.0, metavar="SECONDS",
                      help="etcd: end each watch after this long and resume it from its revision, so a dead "
                           "connection is found within it plus 30 s (default: 300; 0: never)")
    pipe.add_argument("--watch-progress-interval", type=float, default=None, metavar="SECONDS",
                      help="etcd: the cluster's --experimental-watch-progress-notify-interval (default: 600); "
                           "a watch silent for three of them is a dead connection")
    service = p.add_argument_group("service")
    service.add_argument("--metrics-address", metavar="HOST:PORT",
                         help="serve /metrics (Prometheus), /healthz and /readyz here (default: off)")
    pipe.add_argument("--allow-secrets", action="store_true",
                      help="let Secret objects through (their data always redacted)")
    add_redaction_arguments(p)
    p.set_defaults(func=main)


#: What ``run -o`` takes: ``json``, one JSON object per line.
RUN_FORMATS = ("json",)


def main(args: argparse.Namespace) -> int:
    args.output, args.to = resolve_output("run", args.output, args.to, formats=RUN_FORMATS, legacy_paths=True)
    resources = args.resource_names = parse_resources(args)
    args.redaction_rules = redaction_rules(args)
    if args.batch_size < 1:
        raise ConfigError("--batch-size: must be at least 1")
    if args.batch_window <= 0:
        raise ConfigError("--batch-window: must be more than 0 seconds")
    if args.watch_timeout < 0:
        raise ConfigError("--watch-timeout: must be 0 (never) or more seconds")
    if args.watch_progress_interval is not None and args.watch_progress_interval <= 0:
        raise ConfigError("--watch-progress-interval: must be more than 0 seconds")
    if args.metrics_address:
        parse_address(args.metrics_address)  # a bad address fails before any connection
    apply_environment(args)
    source = choose_source(args)
    if "secrets" in resources and not args.allow_secrets:
        notice("secrets: Secret objects are dropped without --allow-secrets (with it, their data is redacted)",
               kind="warning", resource="secrets")
    if source in ("replay", "none"):
        return _replay(args, resources)
    import trio

    if source == "etcd":
        readers = _etcd_readers(args, resources)
    else:
        readers = _apiserver_readers(args, resources, in_cluster=source == "in-cluster")
    return trio.run(_run_pipeline, args, readers)


async def _run_pipeline(
    args: argparse.Namespace,
    readers: Sequence[Any] = (),
    drive: Callable[[Any], Awaitable[object]] | None = None,
) -> int:
    """Build the runner with every ``--to`` destination, then run it.

    ``drive`` replaces ``runner.run()`` when something else must run it (a
    replay adds its own readers inside vcrpy's playback).
    """
    from tattler_etcd.cli._destinations import DestinationContext, open_destinations
    from tattler_etcd.pipeline import Runner
    from tattler_etcd.service.signals import run_draining_on_signals

    runner = Runner(
        batch_window=args.batch_window, batch_size=args.batch_size, allow_secrets=args.allow_secrets,
        redact=args.redaction_rules, keep_unknown_fields=args.keep_unknown_fields,
    )
    ctx = DestinationContext(format=args.output, on_closed=runner.stop, args=args)
    async with open_destinations(args.to, ctx) as destinations:
        for reader in readers:
            runner.add_reader(reader)
        for d in destinations:
            runner.add_processor(d.name, d.processor, policy=d.policy, buffer=d.buffer)
        status = await run_draining_on_signals(
            lambda: drive(runner) if drive is not None else runner.run(), runner.stop,
            alongside=_endpoints(args, runner),
        )
    if args.once and status == 0:
        _say_if_empty(runner.counters, getattr(args, "resource_names", ()))
    return status


def _endpoints(args: argparse.Namespace, runner: Runner) -> list[Callable[..., Awaitable[object]]]:
    """The ``--metrics-address`` server, on a registry of its own, as a task to run beside the pipeline."""
    if not args.metrics_address:
        return []
    # hypercorn (h11, h2, wsproto) only when serving: ~60 ms off every other start;
    # prometheus-client ~25 ms.
    import prometheus_client

    from tattler_etcd.pipeline.metrics import readiness
    from tattler_etcd.service.http import serve_endpoints

    registry = prometheus_client.CollectorRegistry()
    registry.register(runner.collector())
    return [functools.partial(serve_endpoints, args.metrics_address, registry, lambda: readiness(runner))]


def _say_if_empty(counters: Any, resources: Sequence[str]) -> None:
    """``--once`` that delivered nothing says so: an empty output is not a silent success."""
    if counters["routing.entries"]:
        return
    listed = counters["safety.in"]
    what = ",".join(resources)
    if listed:
        notice(f"--once: listed {listed} objects and the safety stage dropped every one "
               "(Secrets need --allow-secrets)", kind="warning")
    else:
        notice(f"--once: listed 0 objects{f' ({what})' if what else ''}", kind="warning")


def _etcd_readers(args: argparse.Namespace, resources: list[str]) -> list[Any]:
    from tattler_etcd.readers.etcd import EtcdReader

    return [EtcdReader(
        etcd_endpoints(args), resources=resources, prefix=args.prefix, page_size=args.page_size,
        once=args.once, **etcd_options(args),
        revision_file=args.revision_file, relist_interval=args.relist_interval,
        watch_timeout=args.watch_timeout or None, progress_interval=args.watch_progress_interval,
        connect_timeout=connect_timeout(args),
        progress=_ListProgress(sys.stderr) if sys.stderr.isatty() else None,
    )]


class _ListProgress:
    """``listed 120,500 objects (24,100/s)`` on one stderr line during a long initial list.

    Only on a terminal (the caller checks), at most 4 updates a second, and
    only once the list has run a second: a short list prints nothing.
    """

    def __init__(self, stream: Any) -> None:
        self._clock = time.monotonic
        self._stream = stream
        self._start = self._clock()
        self._last = 0.0
        self._shown = False

    def __call__(self, listed: int, done: bool = False) -> None:
        now = self._clock()
        elapsed = now - self._start
        if not done and (elapsed < 1.0 or now - self._last < 0.25):
            return
        if done and not self._shown:
            return
        self._last = now
        self._shown = True
        rate = listed / elapsed if elapsed > 0 else 0.0
        end = "\n" if done else ""
        self._stream.write(f"\rlisted {listed:,} objects ({rate:,.0f}/s){end}")
        self._stream.flush()


def _apiserver_readers(args: argparse.Namespace, resources: list[str], *, in_cluster: bool) -> list[Any]:
    if args.relist_interval is not None and args.relist_interval <= 0:
        raise ConfigError("--relist-interval: must be more than 0 seconds")
    if args.page_size < 0:
        raise ConfigError("--page-size: must be 0 (no paging) or more")
    from tattler_etcd.readers.apiserver import APIServerReader, FileBookmarkStore, load_incluster, load_kubeconfig

    config = load_incluster() if in_cluster else load_kubeconfig(kubeconfig_path(args), args.context)
    store = FileBookmarkStore(args.bookmark_file) if args.bookmark_file else None
    return [APIServerReader(
        resources, config=config, content_type=args.content_type, page_size=args.page_size,
        relist_interval=args.relist_interval, bookmark_store=store, once=args.once,
        connect_timeout=connect_timeout(args),
    )]


def _replay(args: argparse.Namespace, resources: list[str]) -> int:
    """Replay ``--replay FILE`` (or the bundled recording) on a virtual clock: same file, same bytes out.

    ``--resources`` left at its default means "what was recorded"; any other
    value must name exactly the recorded resources.
    """
    # Here, not at the top: the replay package imports trio.testing, which
    # imports pytest when it is installed (~70 ms more for every --help).
    from tattler_etcd.replay import bundled_recording, read_recording, replay_into, run_replay

    path = args.replay or str(bundled_recording())
    info = read_recording(path)  # bad files fail before any output is opened
    if not args.replay:
        notice(f"no source given: replaying the bundled recording {path} "
               f"({info.source}, {','.join(info.resources)}; see docs/replay.md); {HOW_TO_READ_A_CLUSTER}",
               kind="plain")
    requested = None if args.resources == DEFAULT_RESOURCES else resources

    async def replay() -> int:
        return await _run_pipeline(
            args, drive=lambda runner: replay_into(runner, path, resources=requested, once=args.once),
        )

    return run_replay(replay)
