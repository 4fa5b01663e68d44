"""``tattler-etcd record``: capture a live reader run into a cassette for replay.

The reader lists, then watches, exactly as ``run --etcd-endpoints`` (or
``run --kubeconfig``) would;
every HTTP exchange is written to ``--to FILE`` as a vcrpy cassette, with every
value scrubbed by the safety rules and authorization headers dropped. Give a
limit: ``--events N`` stops after N watch events, ``--duration S`` after S
seconds (whichever comes first); open watch streams are cut after their last
whole line. Replay the file with ``tattler-etcd run --replay FILE``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tattler_etcd.cli._common import (
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
from tattler_etcd.cli._output import add_output_arguments, deprecated, resolve_output, scheme_of
from tattler_etcd.cli._redact import add_redaction_arguments, redaction_rules
from tattler_etcd.errors import ConfigError

if TYPE_CHECKING:
    import trio

    from tattler_etcd.replay import RecordingInfo
    from tattler_etcd.replay._transport import Recorder


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "record", help="record a live run into a cassette for replay", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_reader_arguments(p, endpoints_help="etcd's HTTP gateway (one URL)", endpoints_metavar="URL")
    add_output_arguments(p, formats=RECORD_FORMATS, repeat=False,
                         to_help="the cassette to write (a YAML file); --out FILE, the old spelling, still works")
    p.add_argument("--out", metavar="FILE", help=argparse.SUPPRESS)
    limit = p.add_argument_group("limit (at least one; the first reached stops the recording)")
    limit.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    limit.add_argument("--events", type=int, metavar="N", help="stop after N watch events")
    add_redaction_arguments(p)
    p.set_defaults(func=main)


#: What ``record -o`` takes: a cassette is YAML.
RECORD_FORMATS = ("yaml",)


def _same_file(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _cassette_path(args: argparse.Namespace) -> str:
    """The one file ``--to`` (or the old ``--out``) names.

    Raises:
        ConfigError: none, two different ones, stdout or a URL.
    """
    resolve_output("record", args.output, args.to, formats=RECORD_FORMATS)  # checks -o
    to = args.to
    if args.out is not None:
        if to is not None and _same_file(to) != _same_file(args.out):
            raise ConfigError(f"record: --out {args.out} and --to {to} name different files: give --to only")
        deprecated(f"--out {args.out}", f"--to {args.out}")
        to = args.out
    if to is None:
        raise ConfigError("record: give --to FILE, the cassette to write")
    if to == "-" or scheme_of(to) is not None:
        raise ConfigError(f"record: --to {to}: a recording is written to a file; give a path")
    return os.path.expanduser(str(to))


def main(args: argparse.Namespace) -> int:
    # Here, not at the top: the replay package imports trio.testing, which
    # imports pytest when it is installed (~70 ms more for every --help);
    # trio itself ~110 ms and the APIServer reader ~60 ms: not for the parser.
    import trio

    from tattler_etcd.readers.apiserver import load_incluster, load_kubeconfig
    from tattler_etcd.replay._record import record_apiserver, record_etcd

    args.out = _cassette_path(args)
    resources = parse_resources(args)
    rules = redaction_rules(args)
    if args.duration is None and args.events is None:
        raise ConfigError("record: give --duration S or --events N (a watch never ends by itself)")
    if args.page_size < 1:
        raise ConfigError("--page-size: must be at least 1")
    apply_environment(args)
    timeout = connect_timeout(args)
    if args.etcd_endpoints and (args.kubeconfig or args.context or args.in_cluster):
        raise ConfigError("record: give one source: --endpoints, or --kubeconfig/--context/--in-cluster")
    source = choose_source(args)
    if source == "none":
        raise ConfigError("record: give one source: --endpoints HOST:PORT, or --kubeconfig PATH / --context NAME "
                          "/ --in-cluster")
    if source == "etcd":
        endpoint = etcd_endpoints(args)
        options = etcd_options(args)

        async def record(task_status: trio.TaskStatus[Any]) -> RecordingInfo:
            return await record_etcd(
                args.out, endpoint=endpoint, resources=resources, prefix=args.prefix,
                page_size=args.page_size, max_events=args.events, duration=args.duration,
                task_status=task_status, redact=rules, keep_unknown_fields=args.keep_unknown_fields,
                connect_timeout=timeout, **options,
            )
    else:
        config = (load_incluster() if source == "in-cluster"
                  else load_kubeconfig(kubeconfig_path(args), args.context))

        async def record(task_status: trio.TaskStatus[Any]) -> RecordingInfo:
            return await record_apiserver(
                args.out, config=config, resources=resources, page_size=args.page_size,
                content_type=args.content_type, max_events=args.events, duration=args.duration,
                task_status=task_status, redact=rules, keep_unknown_fields=args.keep_unknown_fields,
                connect_timeout=timeout,
            )
    info, status = trio.run(_record_until_signalled, record)
    if not info.interactions:
        # Nothing answered: a cassette without a single exchange would replay as an empty
        # cluster, which is a lie, not a recording.
        with contextlib.suppress(FileNotFoundError):
            os.remove(args.out)
        notice(f"recorded nothing: {info.endpoint} never answered (stopped by {info.stopped_by}); "
               "no file written", kind="error")
        return 1
    notice(
        f"recorded {info.interactions} interactions ({info.watch_events} watch events, "
        f"stopped by {info.stopped_by}) to {args.out} ({os.path.getsize(args.out)} bytes)", kind="plain",
    )
    return status


async def _record_until_signalled(
    record: Callable[[trio.TaskStatus[Any]], Awaitable[RecordingInfo]],
) -> tuple[RecordingInfo, int]:
    """Run ``record``; SIGTERM/SIGINT stop the recorder, so the cassette is written with what was recorded."""
    from tattler_etcd.service.signals import run_draining_on_signals

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
