"""``tattler-etcd decode`` / ``encode``: one raw etcd value <-> JSON or YAML.

``decode`` reads one value on stdin, as ``etcdctl get KEY --print-value-only``
prints it (protobuf ``k8s\\0`` envelope or JSON; the newline etcdctl adds is
ignored), and prints the object as the APIServer would serve it.

``encode`` reads one object in JSON or YAML on stdin and writes the raw value
exactly as the APIServer would store it (for ``etcdctl put KEY < file``).

Bad input: a one-line message on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from tattler_etcd.cli._output import add_output_arguments, resolve_output, scheme_of
from tattler_etcd.errors import CodecError, ConfigError, DecodeError, EncodeError

#: What ``decode -o`` takes.
DECODE_FORMATS = ("json", "yaml")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "decode", help="decode one raw etcd value (stdin) to JSON or YAML",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_output_arguments(p, formats=DECODE_FORMATS, repeat=False, to_help="where the object goes: - (stdout) or a PATH")
    p.add_argument("--compact", action="store_true", help="JSON on one line")
    p.add_argument("--max-size", type=int, default=None, metavar="BYTES", help="refuse values larger than this")
    p.set_defaults(func=run_decode)
    e: argparse.ArgumentParser = sub.add_parser(
        "encode", help="encode one object (JSON or YAML on stdin) to the raw etcd value",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("--to", metavar="DEST", help="where the raw value goes: - (stdout) or a PATH")
    e.set_defaults(func=run_encode)


def _decode_value(data: bytes, max_size: int | None) -> dict[str, Any]:
    # The codec here and in run_encode, not at the top: protobuf and the schema
    # tables (~55 ms) are for these two commands, not for every parser.
    from tattler_etcd import codec

    kwargs = {} if max_size is None else {"max_size": max_size}
    try:
        return codec.decode(data, **kwargs)
    except DecodeError:
        # etcdctl ends what it prints with a newline; a stored value never ends so
        if data.endswith(b"\n") and data.startswith(codec.MAGIC):
            return codec.decode(data[:-1], **kwargs)
        raise


def _write_to(dest: str | None, data: bytes) -> None:
    """Write ``data`` to ``--to`` (stdout when ``-`` or absent).

    Raises:
        ConfigError: a URL, or a file that cannot be written.
    """
    if dest is None or dest == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    if scheme_of(dest) is not None:
        raise ConfigError(f"--to {dest}: one value is written to a file or stdout; give a path or -")
    path = os.path.expanduser(dest)
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise ConfigError(f"--to {dest}: {exc.strerror}") from exc


def run_decode(args: argparse.Namespace) -> int:
    fmt, _ = resolve_output("decode", args.output, args.to, formats=DECODE_FORMATS)
    data = sys.stdin.buffer.read()
    if not data.strip():
        raise DecodeError("stdin: no value (pipe in what `etcdctl get KEY --print-value-only` prints)")
    try:
        obj = _decode_value(data, args.max_size)
    except CodecError as exc:
        raise exc.with_key("stdin") from None
    if fmt == "yaml":
        import yaml  # here, not at the top: ~13 ms more for every --help, for a choice few make

        text = yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, default_flow_style=False)
    elif args.compact:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"
    else:
        text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    _write_to(args.to, text.encode("utf-8"))
    return 0


def _read_object(data: bytes) -> dict[str, Any]:
    text = data.decode("utf-8", "replace")
    try:
        obj = json.loads(text)
    except ValueError:
        import yaml  # (see run_decode)

        try:
            obj = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise EncodeError(f"stdin: neither JSON nor YAML{where}") from None
    if not isinstance(obj, dict):
        raise EncodeError("stdin: expected one object (a mapping with apiVersion and kind)")
    return obj


def run_encode(args: argparse.Namespace) -> int:
    from tattler_etcd import codec  # (see _decode_value)

    obj = _read_object(sys.stdin.buffer.read())
    _write_to(args.to, codec.encode(obj))
    return 0
