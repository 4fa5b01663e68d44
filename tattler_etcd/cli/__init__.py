"""The ``tattler-etcd`` command.

Each subcommand lives in its own module in this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a
function ``(args) -> int`` (the exit status). Exit status 2 means bad input or
bad usage, with a one-line message on stderr; 1 means the job failed.

The global options (``-v``, ``--log-level``, ``--log-format``, ``--version``)
are accepted before or after the subcommand, as people type them either way:
each subparser gets a copy under its own names, merged in :func:`main`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from tattler_etcd import __version__
from tattler_etcd.cli._logging import LEVELS, notice
from tattler_etcd.cli._logging import setup as setup_logging
from tattler_etcd.errors import TattlerError

__all__ = ["build_parser", "main"]

#: Subcommand modules, in the order ``--help`` lists them.
_COMMANDS = ("run", "record", "consume", "decode", "encode")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="tattler-etcd",
        description=(
            "Read Kubernetes object state once, from etcd or the APIServer, and fan it "
            "out as batches to processors. With no source, `run` replays the bundled recording."
        ),
    )
    _add_global_options(parser, suffix="")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    seen: set[str] = set()
    for name in _COMMANDS:
        module_name = "codec" if name in ("decode", "encode") else name
        if module_name in seen:
            continue
        seen.add(module_name)
        module = importlib.import_module(f"tattler_etcd.cli._{module_name}")
        module.register(sub)
    for subparser in sub.choices.values():
        # After the subcommand too; SUPPRESS keeps what was given before it.
        _add_global_options(subparser, suffix=_AFTER)
    return parser


#: Where the copies of the global options given after the subcommand land.
_AFTER = "_after_command"


def _version() -> str:
    # The package's own __version__, not importlib.metadata's: importing that
    # (with the email and zipfile packages it reads metadata with) cost every
    # command 20-60 ms. tests/test_cli_globals.py checks the two agree.
    return f"tattler-etcd {__version__}"


def _level(text: str) -> str:
    if text.lower() not in LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r}: give one of {', '.join(LEVELS)}")
    return text.lower()


def _add_global_options(p: argparse.ArgumentParser, *, suffix: str) -> None:
    g = p.add_argument_group("global options (before or after the command)")
    after = argparse.SUPPRESS if suffix else None
    g.add_argument("-v", "--verbose", action="count", dest="verbose" + suffix,
                   default=argparse.SUPPRESS if suffix else 0,
                   help="more logging on stderr: -v info, -vv debug")
    g.add_argument("--log-level", type=_level, metavar="LEVEL", dest="log_level" + suffix, default=after,
                   help=f"log level: {'|'.join(LEVELS)} (default: warning; wins over -v)")
    g.add_argument("--log-format", choices=("text", "json"), dest="log_format" + suffix, default=after,
                   help="text (default) or json: one object per line (time, level, logger, message, extras)")
    g.add_argument("--version", action="version", version=_version())


def _log_settings(args: argparse.Namespace) -> tuple[int, str]:
    verbose = args.verbose + getattr(args, "verbose" + _AFTER, 0)
    level_name = getattr(args, "log_level" + _AFTER, None) or args.log_level
    fmt = getattr(args, "log_format" + _AFTER, None) or args.log_format or "text"
    if level_name is not None:
        level = int(getattr(logging, level_name.upper()))
    else:
        level = logging.WARNING - 10 * min(verbose, 2)
    return level, fmt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    level, fmt = _log_settings(args)
    with setup_logging(level, fmt):
        try:
            return int(args.func(args))
        except TattlerError as exc:
            notice(str(exc), kind="error")
            return 2
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
