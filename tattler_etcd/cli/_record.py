"""``tattler-etcd record``: capture a live reader run into a cassette for replay.

The reader lists, then watches, exactly as ``run --etcd-endpoints`` (or
``run --kubeconfig``) would;
every HTTP exchange is written to ``--out`` as a vcrpy cassette, with every
value scrubbed by the safety rules and authorization headers dropped. Give a
limit: ``--events N`` stops after N watch events, ``--duration S`` after S
seconds (whichever comes first); open watch streams are cut after their last
whole line. Replay the file with ``tattler-etcd run --replay FILE``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from tattler_etcd.cli._common import add_reader_arguments, parse_resources
from tattler_etcd.errors import ConfigError

if TYPE_CHECKING:
    from tattler_etcd.replay import RecordingInfo
    from tattler_etcd.replay._transport import Recorder


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "record", help="record a live run into a cassette for replay", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_reader_arguments(p, endpoints_help="etcd's HTTP gateway (one URL)", endpoints_metavar="URL")
    p.add_argument("--out", required=True, metavar="FILE", help="the cassette to write (YAML)")
    limit = p.add_argument_group("limit (at least one; the first reached stops the recording)")
    limit.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    limit.add_argument("--events", type=int, metavar="N", help="stop after N watch events")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from tattler_etcd.replay._record import record_apiserver, record_etcd

    resources = parse_resources(args)
    if args.duration is None and args.events is None:
        raise ConfigError("record: give --duration S or --events N (a watch never ends by itself)")
    if args.page_size < 1:
        raise ConfigError("--page-size: must be at least 1")
    sources = [bool(args.etcd_endpoints), bool(args.kubeconfig or args.in_cluster)]
    if sum(sources) != 1:
        raise ConfigError("record: give one source: --etcd-endpoints URL, or --kubeconfig PATH / --in-cluster")
    if args.etcd_endpoints:
        async def record(task_status: trio.TaskStatus[Any]) -> RecordingInfo:
            return await record_etcd(
                args.out, endpoint=args.etcd_endpoints, resources=resources, prefix=args.prefix,
                page_size=args.page_size, max_events=args.events, duration=args.duration,
                cacert=args.cacert, cert=args.cert, key=args.key, task_status=task_status,
            )
    else:
        from tattler_etcd.readers.apiserver import load_incluster, load_kubeconfig

        config = load_kubeconfig(args.kubeconfig, args.context) if args.kubeconfig else load_incluster()

        async def record(task_status: trio.TaskStatus[Any]) -> RecordingInfo:
            return await record_apiserver(
                args.out, config=config, resources=resources, page_size=args.page_size,
                content_type=args.content_type, max_events=args.events, duration=args.duration,
                task_status=task_status,
            )
    info, status = trio.run(_record_until_signalled, record)
    print(
        f"tattler-etcd: recorded {info.interactions} interactions ({info.watch_events} watch events, "
        f"stopped by {info.stopped_by}) to {args.out} ({os.path.getsize(args.out)} bytes)",
        file=sys.stderr,
    )
    return status


async def _record_until_signalled(
    record: Callable[[trio.TaskStatus[Any]], Awaitable[RecordingInfo]],
) -> tuple[RecordingInfo, int]:
    """Run ``record``; SIGTERM/SIGINT stop the recorder, so the cassette is written with what was recorded."""
    from tattler_etcd.service import run_draining_on_signals

    started = _RecorderStarted()
    result: list[RecordingInfo] = []

    async def work() -> None:
        result.append(await record(started))

    status = await run_draining_on_signals(work, started.stop, what="recording")
    return result[0], status


class _RecorderStarted:
    """The ``task_status`` given to ``record_etcd``/``record_apiserver``: keeps the recorder to stop it.

    A stop asked for before the recorder exists is applied as soon as it does.
    """

    def __init__(self) -> None:
        self.recorder: Recorder | None = None
        self.stop_asked = False

    def started(self, value: Recorder) -> None:
        self.recorder = value
        if self.stop_asked:
            value.stop("signal")

    def stop(self) -> None:
        self.stop_asked = True
        if self.recorder is not None:
            self.recorder.stop("signal")
