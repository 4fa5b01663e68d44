"""Where the output goes (``--to DEST``) and what format it has (``-o/--output FORMAT``).

One convention for every subcommand, the one kubectl users already have:
``-o`` names a *format* (``json``, ``yaml``), never a file; ``--to`` names a
*destination*, and may be repeated (``run`` sends every batch to each):

* ``-`` is stdout (the default);
* a path (``out.jsonl``, ``./yaml``, ``file:///tmp/out.jsonl``) is a file;
* ``SCHEME://...`` is looked up in a small registry of schemes, each mapped to
  a factory that builds a processor and its routing policy. Other parts of the
  package register theirs (``nats://``, ``https://``) with
  :func:`register_scheme`; an unknown scheme is a :class:`ConfigError` that
  lists the known ones.

The old spellings keep working, with a note on stderr: ``run -o FILE`` (a
value that is not a format name is taken as a path) and ``record --out FILE``.
A value that could mean either (a format name that is also a file here, or a
destination given both ways and differently) is refused with a message that
says how to write each meaning.

The flags and their checks are in :mod:`._output` (re-exported here), which
the parsers import; this module opens destinations, so it imports the
pipeline, and the commands import it when they run.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TextIO

from tattler_etcd.cli._output import FORMAT_NAMES as FORMAT_NAMES
from tattler_etcd.cli._output import add_output_arguments as add_output_arguments
from tattler_etcd.cli._output import deprecated as deprecated
from tattler_etcd.cli._output import resolve_output as resolve_output
from tattler_etcd.cli._output import scheme_of as scheme_of
from tattler_etcd.errors import ConfigError
from tattler_etcd.pipeline import JsonLinesProcessor
from tattler_etcd.pipeline.routing import Policy, Processor

__all__ = [
    "FORMAT_NAMES",
    "Destination",
    "DestinationContext",
    "DestinationFactory",
    "add_output_arguments",
    "deprecated",
    "open_destinations",
    "register_scheme",
    "resolve_output",
    "scheme_of",
    "schemes",
]


@dataclasses.dataclass(frozen=True)
class Destination:
    """What a factory built for one ``--to``: a processor and how the router treats it."""

    #: The processor's name in the runner (counters ``processor.<name>.*``); made unique by the caller.
    name: str
    processor: Processor
    policy: Policy = Policy.BLOCK
    buffer: int = 0


@dataclasses.dataclass(frozen=True)
class DestinationContext:
    """What a factory may use besides the destination text."""

    #: The ``-o`` format (``json`` for ``run``).
    format: str
    #: Call when the destination has gone away for good (a closed pipe): the CLI stops the run.
    on_closed: Callable[[], None]
    #: Every parsed flag, for scheme-specific options a factory adds to the parser itself.
    args: argparse.Namespace | None = None


#: ``factory(dest, ctx)``: an async context manager yielding the :class:`Destination`;
#: it opens connections or files on enter (failing with a :class:`ConfigError` that
#: names ``dest``) and flushes and closes them on exit, after the pipeline drained.
DestinationFactory = Callable[[str, DestinationContext], AbstractAsyncContextManager[Destination]]


@dataclasses.dataclass
class _Scheme:
    target: DestinationFactory | str
    help: str


_SCHEMES: dict[str, _Scheme] = {}


def register_scheme(scheme: str, factory: DestinationFactory | str, *, help: str) -> None:
    """Make ``--to SCHEME://...`` build its destination with ``factory``.

    ``factory`` may be ``"package.module:name"``: it is imported on first use,
    so a scheme's dependencies cost nothing to commands that do not use it.
    Registering a scheme again replaces it (the last registration wins).
    """
    name = scheme.lower().rstrip(":/")
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*", name):
        raise ConfigError(f"register_scheme: {scheme!r} is not a URL scheme")
    _SCHEMES[name] = _Scheme(factory, help)


def schemes() -> dict[str, str]:
    """The registered schemes and what each does, sorted by name."""
    return {name: s.help for name, s in sorted(_SCHEMES.items())}


def _factory(dest: str) -> DestinationFactory:
    scheme = scheme_of(dest)
    if scheme is None:
        return _file_destination
    entry = _SCHEMES.get(scheme)
    if entry is None:
        known = ", ".join(f"{s}://" for s in _SCHEMES) or "none"
        raise ConfigError(
            f"--to {dest}: unknown scheme {scheme}:// (known: {known}; a path or - writes a file or stdout)"
        )
    if isinstance(entry.target, str):
        module, _, attr = entry.target.partition(":")
        entry.target = getattr(importlib.import_module(module), attr)
    assert not isinstance(entry.target, str)
    return entry.target


def _file_path(dest: str) -> str:
    if scheme_of(dest) == "file":
        return dest[len("file://"):]
    return os.path.expanduser(dest)


@asynccontextmanager
async def _file_destination(dest: str, ctx: DestinationContext) -> AsyncIterator[Destination]:
    """``-`` (stdout), a path or ``file://PATH``: JSON lines, written as each batch arrives."""
    if ctx.format != "json":
        raise ConfigError(f"--to {dest}: a file or stdout takes -o json (JSON lines), not -o {ctx.format}")
    out: TextIO
    if dest == "-":
        out = sys.stdout
    else:
        path = _file_path(dest)
        try:
            out = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed below, after the drain
        except OSError as exc:
            raise ConfigError(f"--to {dest}: {exc.strerror}") from exc
    try:
        yield Destination("stdout" if dest == "-" else "file",
                          JsonLinesProcessor(out, on_closed=ctx.on_closed), Policy.BLOCK)
    finally:
        if out is sys.stdout:
            try:
                out.flush()
            except BrokenPipeError:
                pass
        else:
            out.close()


register_scheme("file", _file_destination, help="a file, JSON lines (file:///path/out.jsonl)")


@asynccontextmanager
async def open_destinations(dests: Sequence[str], ctx: DestinationContext) -> AsyncIterator[list[Destination]]:
    """Open every destination (in order; all closed on exit), with unique processor names.

    Raises:
        ConfigError: an unknown scheme, a destination given twice, one that cannot be opened.
    """
    seen: set[str] = set()
    for dest in dests:
        norm = dest if dest == "-" or scheme_of(dest) not in (None, "file") else os.path.abspath(_file_path(dest))
        if norm in seen:
            raise ConfigError(f"--to {dest}: given twice")
        seen.add(norm)
    factories = [_factory(d) for d in dests]  # every scheme checked before anything is opened
    names: dict[str, int] = {}
    opened: list[Destination] = []
    async with AsyncExitStack() as stack:
        for dest, factory in zip(dests, factories, strict=True):
            d = await stack.enter_async_context(factory(dest, ctx))
            n = names[d.name] = names.get(d.name, 0) + 1
            opened.append(dataclasses.replace(d, name=d.name if n == 1 else f"{d.name}-{n}"))
        yield opened


# Delivery (issue 14): imported on first use, so nats-py is loaded only for nats://.
register_scheme("nats", "tattler_etcd.cli._delivery:nats_destination",
                help="a NATS JetStream stream and KV state mirror (nats://HOST:PORT?stream=S&kv=B)")
register_scheme("https", "tattler_etcd.cli._delivery:webhook_destination",
                help="a webhook: each batch POSTed as CloudEvents (https://HOST/PATH?ca=FILE&token_file=FILE)")
register_scheme("http", "tattler_etcd.cli._delivery:webhook_destination",
                help="a webhook over plain HTTP (http://HOST/PATH)")
