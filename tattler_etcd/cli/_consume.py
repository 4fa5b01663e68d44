"""``tattler-etcd consume nats://HOST:PORT``: print what tattler-etcd delivered to NATS, as JSON lines.

By default it reads the KV state mirror: every object the bucket holds, then
every change as it comes (``--once``: the state only). ``--stream`` reads the
stream of changes instead, from its start, ``--from-sequence N`` or
``--since TIME``; ``--durable NAME`` resumes where that consumer stopped.
The lines are the ones ``tattler-etcd run`` prints.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

from tattler_etcd.cli._resources import canonical_resources
from tattler_etcd.errors import ConfigError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "consume",
        help="print the state (or the changes) delivered to NATS, as JSON lines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", metavar="nats://HOST:PORT[?stream=S&kv=B]",
                   help="the NATS server, and the stream / bucket names if not the defaults")
    p.add_argument("--resources", metavar="LIST",
                   help="comma-separated resources, as `run` names them (default: all)")
    p.add_argument("--namespace", metavar="NS", help="only this namespace ('' for cluster-scoped objects)")
    p.add_argument("--once", action="store_true",
                   help="stop once the state (or the stream so far) has been printed")
    s = p.add_argument_group("stream")
    s.add_argument("--stream", action="store_true", help="read the stream of changes, not the state")
    start = s.add_mutually_exclusive_group()
    start.add_argument("--from-sequence", type=int, metavar="N", help="start at this stream sequence")
    start.add_argument("--since", metavar="TIME", help="start at this time (ISO 8601; UTC unless it says)")
    s.add_argument("--durable", metavar="NAME", help="a durable consumer: resume where it stopped")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    # Here, not at the top: trio (~110 ms) and nats-py are not for the parser.
    import trio

    from tattler_etcd.delivery.nats import parse_nats_url

    options = parse_nats_url(args.url)
    resources = None
    if args.resources is not None:
        words = [r.strip() for r in args.resources.split(",") if r.strip()]
        if not words:
            raise ConfigError("--resources: give at least one resource")
        resources = canonical_resources(words)  # po, Pod, pods: the names run publishes under
    streamed = args.stream or args.from_sequence is not None or args.since or args.durable
    if args.from_sequence is not None and args.from_sequence < 1:
        raise ConfigError("--from-sequence: stream sequences start at 1")
    since = None
    if args.since:
        try:
            since = datetime.datetime.fromisoformat(args.since)
        except ValueError:
            raise ConfigError(f"--since: not an ISO 8601 time: {args.since!r}") from None
    return trio.run(_consume, args, options, resources, bool(streamed), since)


async def _consume(args: argparse.Namespace, options: Any, resources: list[str] | None, streamed: bool,
                   since: datetime.datetime | None) -> int:
    from tattler_etcd.delivery.consume import open_state, open_stream

    if streamed:
        opened = open_stream(options.url, stream=options.stream, prefix=options.prefix, resources=resources,
                             namespace=args.namespace, start_sequence=args.from_sequence, start_time=since,
                             durable=args.durable, until_synced=args.once, options=options.connect)
    else:
        opened = open_state(options.url, bucket=options.bucket, resources=resources, namespace=args.namespace,
                            until_synced=args.once, options=options.connect)
    out = sys.stdout
    async with opened as feed:
        async for entry in feed:
            out.write(entry.to_json() + "\n")
            if not feed.buffered:
                out.flush()
    out.flush()
    return 0
