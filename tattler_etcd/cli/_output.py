"""``-o/--output FORMAT`` and ``--to DEST``: the flags and their checks (see :mod:`._destinations`).

Apart from :mod:`._destinations` (which opens the destinations, and so
imports the pipeline) so that every subcommand's parser can add and check
these flags without importing trio or the codec: ``tattler-etcd --help``
and ``--version`` stay cheap.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence

from tattler_etcd.cli._logging import notice
from tattler_etcd.errors import ConfigError

__all__ = ["FORMAT_NAMES", "add_output_arguments", "deprecated", "resolve_output", "scheme_of"]

#: Every format name any subcommand knows. ``-o VALUE`` with one of these is a
#: format; anything else is the old ``-o FILE`` spelling.
FORMAT_NAMES = ("json", "yaml")

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme_of(dest: str) -> str | None:
    """The URL scheme of ``dest`` (lower case), or None for ``-`` and plain paths."""
    m = _SCHEME.match(dest)
    return m.group(1).lower() if m else None


def deprecated(old: str, new: str) -> None:
    """One note on stderr for an old spelling that still works."""
    notice(f"{old} is deprecated; say {new}")


def add_output_arguments(
    p: argparse.ArgumentParser, *, formats: Sequence[str], to_help: str, repeat: bool = True,
) -> None:
    """``-o/--output FORMAT`` and ``--to DEST`` (repeatable when ``repeat``)."""
    p.add_argument("-o", "--output", metavar="FORMAT",
                   help=f"output format: {'|'.join(formats)} (default: {formats[0]})")
    p.add_argument("--to", action="append" if repeat else "store", metavar="DEST", help=to_help)


def resolve_output(
    command: str, output: str | None, to: Sequence[str] | str | None, *, formats: Sequence[str],
    legacy_paths: bool = False,
) -> tuple[str, list[str]]:
    """The format and the destinations from ``-o`` and ``--to`` (default: ``formats[0]`` to stdout).

    With ``legacy_paths``, ``-o VALUE`` where VALUE is no format name is the
    old ``-o FILE`` (a note on stderr says so).

    Raises:
        ConfigError: a format this command does not write, an ambiguous
            value, or a destination given both ways.
    """
    dests = [to] if isinstance(to, str) else list(to or [])
    fmt = formats[0]
    if output is not None:
        if output in FORMAT_NAMES:
            if not dests and legacy_paths and os.path.exists(output):
                raise ConfigError(
                    f"{command}: -o {output} is ambiguous: a format, and a file here; "
                    f"say --to ./{output} to write that file, or -o {output} --to - for {output} on stdout"
                )
            if output not in formats:
                raise ConfigError(
                    f"{command}: -o {output}: {command} writes {'|'.join(formats)}"
                    + (f" (to write a file named {output}, say --to ./{output})" if legacy_paths else "")
                )
            fmt = output
        elif legacy_paths:
            if dests:
                raise ConfigError(
                    f"{command}: -o {output} is not a format ({'|'.join(formats)}) and --to is given too: "
                    f"name the destination with --to only"
                )
            what = "stdout" if output == "-" else "a file"
            deprecated(f"-o {output} ({what})", f"--to {output} (-o names the format: {'|'.join(formats)})")
            dests = [output]
        else:
            raise ConfigError(f"{command}: -o {output}: not a format; give {'|'.join(formats)} "
                              f"(where the output goes is --to PATH)")
    return fmt, dests or ["-"]
