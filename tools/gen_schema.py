#!/usr/bin/env python3
"""Generate the codec's schema (``tattler_etcd/codec/_generated/schema.json``).

Why a generator of our own: the Kubernetes protobuf storage format is defined
by ``generated.proto`` files, but the JSON shape the APIServer serves depends on
facts that live only in the Go struct tags of ``types.go`` (JSON name,
``omitempty``/``omitzero``, pointer or not, embedded inline structs). This tool
reads both from an upstream ``k8s.io/api`` and ``k8s.io/apimachinery``
checkout and writes them in our own compact format. The checkouts are needed
only to regenerate; nothing upstream (no ``.proto`` text, Go code or comments)
is copied into the repository, only the facts (names, numbers, types, flags).

Several releases can be given; the first one wins and later ones only add the
messages, fields and group-versions the first lacks, so objects written by
older clusters (removed kinds and fields) still decode::

    git --git-dir=/path/kubernetes+api/repo archive <rev> | tar -x -C /tmp/api-<rev>
    python tools/gen_schema.py \\
        --source 10b39a39:/tmp/api-HEAD:/tmp/apimachinery-HEAD \\
        --source v0.30.0:/tmp/api-v0.30.0:/tmp/apimachinery-v0.30.0 \\
        -o tattler_etcd/codec/_generated/schema.json

Output format (one JSON object; ``tests/test_codec_schema.py`` checks its
shape and that everything derived from it is in step):

- ``sources``: the releases it was made from, newest first.
- ``groups``: ``{apiVersion: proto package}`` (``"v1"`` for core, ``"apps/v1"``...).
- ``meta_package``: the package of meta/v1, whose kinds (Status, WatchEvent,
  ListOptions...) every group-version serves.
- ``messages``: ``{full name: {"special": tag or null, "fields": [...]}}``, each
  field ``[number, proto_name, json_name, type, label, flags]``, in Go's
  declaration order (the order of the JSON keys): type is a
  scalar (``string int32 int64 bool bytes``) or a full message name; label is
  ``opt``, ``rep`` or ``map`` (keys are strings, type is the value type);
  flags letters: ``o`` omitempty, ``z`` omitzero, ``p`` Go pointer, ``i`` inline
  (embedded struct flattened in JSON), ``g`` no Go struct tag found (fallback
  guesses used), ``r`` removed in the newest release (kept so old objects
  decode; emitted only when present, never defaulted).
- special tags: ``time``, ``microtime``, ``duration``, ``quantity``,
  ``intorstring``, ``rawextension``, ``fieldsv1``, ``stringlist`` (a named
  ``[]string`` whose protobuf form is ``{1: items}``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

SCALARS = {"string", "int32", "int64", "bool", "bytes", "uint32", "uint64", "sint32", "sint64", "double", "float"}

#: apimachinery packages whose messages the built-in kinds use.
APIMACHINERY_DIRS = (
    "pkg/apis/meta/v1",
    "pkg/apis/meta/v1beta1",
    "pkg/runtime",
    "pkg/runtime/schema",
    "pkg/api/resource",
    "pkg/util/intstr",
)

META = "k8s.io.apimachinery.pkg.apis.meta.v1"
SPECIAL_BY_NAME = {
    f"{META}.Time": "time",
    f"{META}.MicroTime": "microtime",
    f"{META}.Duration": "duration",
    f"{META}.FieldsV1": "fieldsv1",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "intorstring",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "rawextension",
}

_RE_PACKAGE = re.compile(r"^package\s+([\w.]+)\s*;", re.MULTILINE)
_RE_FIELD = re.compile(r"^\s*(optional|repeated|required)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)")
_RE_MAP = re.compile(r"^\s*map<\s*(\w+)\s*,\s*([\w.]+)\s*>\s+(\w+)\s*=\s*(\d+)")
_RE_GO_TYPE = re.compile(r"^type\s+(\w+)\s+struct\s*\{\s*$")
_RE_GO_SLICE = re.compile(r"^type\s+(\w+)\s+\[\]string\s*$")
_RE_GO_DEFINED = re.compile(r"^type\s+(\w+)\s+(?:(\w+)\.)?([A-Z]\w*)\s*$")
_RE_GO_IMPORT = re.compile(r'^\s*(?:import\s+)?(\w+\s+)?"([\w./-]+)"\s*$')
_RE_GO_FIELD = re.compile(r"^\s*(?:(\w+)\s+)?(\S+)\s+`([^`]*)`")
_RE_TAG = re.compile(r'(\w+):"([^"]*)"')


def parse_proto(text: str) -> tuple[str, dict[str, list[list[Any]]]]:
    """Messages of one generated.proto: {name: [[number, proto_name, type, label]]}."""
    m = _RE_PACKAGE.search(text)
    if not m:
        raise SystemExit("no package line")
    package = m.group(1)
    messages: dict[str, list[list[Any]]] = {}
    current: str | None = None
    depth = 0
    for raw_line in text.splitlines():
        line = raw_line.split("//", 1)[0].rstrip()
        if not line.strip():
            continue
        stripped = line.strip()
        if stripped.startswith("message ") and depth == 0:
            current = stripped.split()[1]
            messages[current] = []
            depth = stripped.count("{") - stripped.count("}")
            continue
        if current is None:
            continue
        if depth == 1:
            fm = _RE_FIELD.match(line)
            if fm:
                label = "rep" if fm.group(1) == "repeated" else "opt"
                messages[current].append([int(fm.group(4)), fm.group(3), _qualify(fm.group(2), package), label])
            mm = _RE_MAP.match(line)
            if mm:
                if mm.group(1) != "string":
                    raise SystemExit(f"{package}.{current}: map key {mm.group(1)} is not supported")
                messages[current].append([int(mm.group(4)), mm.group(3), _qualify(mm.group(2), package), "map"])
        depth += stripped.count("{") - stripped.count("}")
        if depth <= 0:
            current, depth = None, 0
    return package, messages


def _qualify(type_name: str, package: str) -> str:
    if type_name in SCALARS:
        return type_name
    if type_name.startswith("."):
        return type_name[1:]
    if type_name.startswith("k8s.io."):  # older files name other packages without the dot
        return type_name
    return f"{package}.{type_name}"


def parse_go(
    directory: Path,
) -> tuple[dict[str, dict[int, dict[str, Any]]], set[str], dict[str, tuple[str, str]]]:
    """Struct facts by Go type name: {type: {proto number: facts}}, []string wrappers,
    and types defined from another struct (``type X v1.X``): {X: (import path, name)}."""
    structs: dict[str, dict[int, dict[str, Any]]] = {}
    wrappers: set[str] = set()
    defined: dict[str, tuple[str, str]] = {}
    for path in sorted(directory.glob("*.go")):
        name = path.name
        if name.endswith("_test.go") or name.startswith(("zz_generated", "generated")):
            continue
        current: str | None = None
        imports: dict[str, str] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            im = _RE_GO_IMPORT.match(line)
            if im and current is None:
                imports[(im.group(1) or im.group(2).rsplit("/", 1)[-1]).strip()] = im.group(2)
                continue
            if current is None:
                dm = _RE_GO_DEFINED.match(line)
                if dm and dm.group(3) not in ("string", "int32", "int64", "bool"):
                    pkg = imports.get(dm.group(2), "") if dm.group(2) else ""
                    defined[dm.group(1)] = (pkg, dm.group(3))
                tm = _RE_GO_TYPE.match(line)
                if tm:
                    current = tm.group(1)
                    structs[current] = {}
                    continue
                sm = _RE_GO_SLICE.match(line)
                if sm:
                    wrappers.add(sm.group(1))
                continue
            if line.startswith("}"):
                current = None
                continue
            code = line.strip()
            if code.startswith("//") or not code:
                continue
            fm = _RE_GO_FIELD.match(line)
            if not fm:
                continue
            field_name, go_type, tag_text = fm.groups()
            tags = dict(_RE_TAG.findall(tag_text))
            proto = tags.get("protobuf")
            if not proto or proto == "-":
                continue
            parts = proto.split(",")
            try:
                number = int(parts[1])
            except (IndexError, ValueError):
                continue
            json_tag = tags.get("json", "")
            json_parts = json_tag.split(",")
            json_name = json_parts[0]
            opts = set(json_parts[1:])
            embedded = field_name is None
            inline = embedded and json_name == ""
            if not json_name and not inline:
                json_name = field_name or go_type.lstrip("*").split(".")[-1]
            structs[current][number] = {
                "json": json_name,
                "omitempty": "omitempty" in opts,
                "omitzero": "omitzero" in opts,
                "pointer": go_type.startswith("*"),
                "inline": inline,
                "order": len(structs[current]),
            }
    return structs, wrappers, defined


def read_source(api_dir: Path, am_dir: Path) -> dict[str, Any]:
    """Messages and group-versions of one release."""
    messages: dict[str, dict[str, Any]] = {}
    groups: dict[str, str] = {}
    proto_files = sorted(api_dir.glob("*/*/generated.proto"))
    proto_files += [am_dir / d / "generated.proto" for d in APIMACHINERY_DIRS if (am_dir / d / "generated.proto").is_file()]
    guessed = 0
    go_cache: dict[Path, Any] = {}

    def go_facts(directory: Path) -> Any:
        if directory not in go_cache:
            go_cache[directory] = parse_go(directory)
        return go_cache[directory]

    def go_dir(import_path: str, here: Path) -> Path:
        if not import_path:
            return here
        for prefix, root in (("k8s.io/api/", api_dir), ("k8s.io/apimachinery/", am_dir)):
            if import_path.startswith(prefix):
                return root / import_path[len(prefix):]
        return here

    for proto_file in proto_files:
        package, protos = parse_proto(proto_file.read_text(encoding="utf-8"))
        structs, wrappers, defined = go_facts(proto_file.parent)
        for name, fields in protos.items():
            full = f"{package}.{name}"
            go = structs.get(name)
            if go is None and name in defined:
                target_pkg, target = defined[name]
                go = go_facts(go_dir(target_pkg, proto_file.parent))[0].get(target)
            go = go or {}
            out_fields = []
            for number, proto_name, type_name, label in sorted(fields):
                facts = go.get(number)
                flags = ""
                if facts is None:
                    guessed += 1
                    facts = {"json": proto_name, "omitempty": True, "omitzero": False, "pointer": False, "inline": False}
                    flags += "g"
                flags += "o" if facts["omitempty"] else ""
                flags += "z" if facts["omitzero"] else ""
                flags += "p" if facts["pointer"] else ""
                flags += "i" if facts["inline"] else ""
                out_fields.append([number, proto_name, facts["json"], type_name, label, flags])
            special = SPECIAL_BY_NAME.get(full)
            if special is None and name in wrappers and [f[1:5] for f in out_fields] == [["items", "items", "string", "rep"]]:
                special = "stringlist"
            # Go's declaration order: the order encoding/json writes keys in
            order = {n: facts["order"] for n, facts in go.items()}
            out_fields.sort(key=lambda f: (order.get(f[0], len(order)), f[0]))
            messages[full] = {"special": special, "fields": out_fields}
        register = proto_file.parent / "register.go"
        if register.is_file() and proto_file.is_relative_to(api_dir):
            text = register.read_text(encoding="utf-8")
            gm = re.search(r'GroupName\s*=\s*"([^"]*)"', text)
            vm = re.search(r'Version:\s*"([^"]+)"', text)
            if gm:
                group = gm.group(1)
                version = vm.group(1) if vm else proto_file.parent.name
                groups[f"{group}/{version}" if group else version] = package
    return {"messages": messages, "groups": groups, "guessed": guessed}


def merge(sources: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The union: the first source wins, later ones add what it lacks."""
    messages: dict[str, dict[str, Any]] = {}
    groups: dict[str, str] = {}
    for _, src in sources:
        for name, msg in src["messages"].items():
            have = messages.get(name)
            if have is None:
                messages[name] = {"special": msg["special"], "fields": list(msg["fields"])}
                continue
            numbers = {f[0] for f in have["fields"]}
            before: int | None = None  # the number of the field this one followed in its release
            for field in msg["fields"]:
                if field[0] not in numbers:
                    # Removed since: written only when present, never defaulted, with its own
                    # release's tags; placed where that release put it (Go writes keys in
                    # declaration order), after the field it followed there.
                    at = next((i + 1 for i, f in enumerate(have["fields"]) if f[0] == before), 0)
                    while at < len(have["fields"]) and "r" in have["fields"][at][5]:
                        at += 1  # after removed fields already placed there
                    have["fields"].insert(at, field[:5] + [field[5] + "r"])
                    numbers.add(field[0])
                before = field[0]
        for api_version, package in src["groups"].items():
            groups.setdefault(api_version, package)
    return {
        "sources": [label for label, _ in sources],
        "meta_package": META,
        "groups": dict(sorted(groups.items())),
        "messages": dict(sorted(messages.items())),
    }


def render(schema: dict[str, Any]) -> str:
    """Stable text: one message per line, so a regeneration diffs readably."""
    lines = ["{"]
    lines.append('"_generated": ' + json.dumps(
        "GENERATED by tools/gen_schema.py from k8s.io/api and k8s.io/apimachinery "
        f"({', '.join(schema['sources'])}); do not edit by hand, regenerate."
    ) + ",")
    lines.append('"sources": ' + json.dumps(schema["sources"]) + ",")
    lines.append('"meta_package": ' + json.dumps(schema["meta_package"]) + ",")
    lines.append('"groups": ' + json.dumps(schema["groups"], separators=(",", ":")) + ",")
    lines.append('"messages": {')
    items = list(schema["messages"].items())
    for i, (name, msg) in enumerate(items):
        sep = "," if i < len(items) - 1 else ""
        lines.append(json.dumps(name) + ":" + json.dumps(msg, separators=(",", ":")) + sep)
    lines.append("}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source", action="append", required=True, metavar="LABEL:API_DIR:APIMACHINERY_DIR",
        help="one release: a label naming it (tag or commit), a k8s.io/api and a k8s.io/apimachinery checkout; newest first",
    )
    parser.add_argument("-o", "--output", required=True, type=Path)
    args = parser.parse_args(argv)
    sources = []
    for spec in args.source:
        label, api_dir, am_dir = spec.split(":")
        src = read_source(Path(api_dir), Path(am_dir))
        print(f"{label}: {len(src['messages'])} messages, {len(src['groups'])} group-versions, "
              f"{src['guessed']} fields without a Go tag", file=sys.stderr)
        sources.append((label, src))
    schema = merge(sources)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(render(schema), encoding="utf-8")
    os.replace(tmp, args.output)
    print(f"wrote {args.output}: {len(schema['messages'])} messages, {len(schema['groups'])} group-versions",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
