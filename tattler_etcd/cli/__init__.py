"""The ``tattler-etcd`` command.

Each subcommand lives in its own module in this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a
function ``(args) -> int`` (the exit status). Exit status 2 means bad input or
bad usage, with a one-line message on stderr; 1 means the job failed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from tattler_etcd.errors import TattlerError

__all__ = ["build_parser", "main"]

#: Subcommand modules, in the order ``--help`` lists them.
_COMMANDS = ("run", "record", "decode", "encode")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="tattler-etcd",
        description=(
            "Read Kubernetes object state once, from etcd or the APIServer, and fan it "
            "out as batches to processors. With no source, `run` replays the bundled recording."
        ),
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    seen: set[str] = set()
    for name in _COMMANDS:
        module_name = "codec" if name in ("decode", "encode") else name
        if module_name in seen:
            continue
        seen.add(module_name)
        module = importlib.import_module(f"tattler_etcd.cli._{module_name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args))
    except TattlerError as exc:
        print(f"tattler-etcd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
