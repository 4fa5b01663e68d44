"""Layers: a module imports only from its own layer or lower ones.

The table below is the one in ``docs/design.md`` ("Layers"); a test keeps the
two the same. Every ``import`` counts, wherever it is written: at the top, in
a function, under ``if TYPE_CHECKING:``. The source is read with ``ast``, not
imported, so the check is cheap and sees imports that never run in tests.

To add a module or package: put its dotted name in the layer it belongs to,
here and in the design page's table. A name covers the module and everything
under it (``tattler_etcd.pipeline`` covers ``tattler_etcd.pipeline.safety``);
the most specific name wins.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "tattler_etcd"

#: Lowest layer first: (layer, the modules and packages in it).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("tattler_etcd._lazy", "tattler_etcd.errors", "tattler_etcd.jsonout", "tattler_etcd.stats")),
    ("codec", ("tattler_etcd.codec",)),
    ("data", ("tattler_etcd.data", "tattler_etcd.models")),
    ("readers", ("tattler_etcd.readers",)),
    ("pipeline", ("tattler_etcd.pipeline", "tattler_etcd.delivery", "tattler_etcd.service")),
    ("replay", ("tattler_etcd.replay",)),
    ("front", ("tattler_etcd", "tattler_etcd.__main__", "tattler_etcd.cli", "tattler_etcd.pytest_plugin",
               "tattler_etcd.service")),
)


#: Peers in one layer that never import each other: each source keeps only its
#: protocol, and what the readers share lives in ``readers._reflector``.
APART: tuple[tuple[str, str], ...] = (
    ("tattler_etcd.readers.etcd", "tattler_etcd.readers.apiserver"),
)


class Import(NamedTuple):
    """One import of a module of the package, where it is written."""

    importer: str
    target: str
    path: str
    line: int


def layer_of(module: str) -> int | None:
    """The index of ``module``'s layer in :data:`LAYERS`, or None when no entry names it.

    The root package names itself only: a new top-level module must be placed.
    """
    best: tuple[int, int] | None = None  # (length of the name that matched, layer)
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            covers = module == name or (name != PACKAGE and module.startswith(name + "."))
            if covers and (best is None or len(name) > best[0]):
                best = (len(name), index)
    return None if best is None else best[1]


def package_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package on disk, by dotted name (a package is its ``__init__``)."""
    out: dict[str, Path] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(module: str, source: str, path: str, known: set[str]) -> Iterator[Import]:
    """The package's modules that ``source`` (module ``module``) imports, with their lines.

    ``from pkg import name`` is an import of ``pkg.name`` when that is a module
    of the package, else of ``pkg`` itself; relative imports are resolved.
    """
    is_package = path.endswith("__init__.py")
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    yield Import(module, alias.name, path, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([base] if base else []))
            if base != PACKAGE and not base.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield Import(module, sub if sub in known else base, path, node.lineno)


def _under(module: str, name: str) -> bool:
    return module == name or module.startswith(name + ".")


def violations(modules: dict[str, Path], root: Path = ROOT) -> list[str]:
    """One line per import of a higher layer (``file:line: importer (layer) imports target (layer)``)
    or between two peers kept :data:`APART`."""
    known = set(modules)
    out = []
    for module, path in sorted(modules.items()):
        mine = layer_of(module)
        if mine is None:
            continue  # reported by test_every_module_has_a_layer
        rel = str(path.relative_to(root))
        for imp in imports_of(module, path.read_text(encoding="utf-8"), rel, known):
            theirs = layer_of(imp.target)
            if theirs is not None and theirs > mine:
                out.append(
                    f"{imp.path}:{imp.line}: {imp.importer} ({LAYERS[mine][0]}) imports "
                    f"{imp.target} ({LAYERS[theirs][0]}), a higher layer"
                )
            for a, b in APART:
                if (_under(module, a) and _under(imp.target, b)) or (_under(module, b) and _under(imp.target, a)):
                    out.append(f"{imp.path}:{imp.line}: {imp.importer} imports {imp.target}: {a} and {b} stay apart")
    return out


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in package_modules() if layer_of(m) is None]
    assert not unplaced, (
        f"modules in no layer: {unplaced}; add each to LAYERS in tests/test_layers.py "
        "and to the table in docs/design.md (section Layers)"
    )


def test_no_module_imports_a_higher_layer_or_a_peer_kept_apart() -> None:
    found = violations(package_modules())
    assert not found, "imports against the layers (docs/design.md, Layers):\n" + "\n".join(found)


def test_the_design_page_shows_the_same_table() -> None:
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| *(\d+) *\| *(\w+) *\|([^|\n]*)\|", section, re.MULTILINE)
    documented = [(name, tuple(sorted(re.findall(r"`([\w.]+)`", cell)))) for _, name, cell in rows]
    assert documented == [(name, tuple(sorted(names))) for name, names in LAYERS]


# ---------------------------------------------------------------- the checker itself


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, source in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return package_modules(tmp_path)


def test_a_lower_layer_importing_a_higher_one_is_named_with_file_and_line(tmp_path: Path) -> None:
    modules = _tree(tmp_path, {
        "tattler_etcd/__init__.py": "",
        "tattler_etcd/errors.py": "",
        "tattler_etcd/codec/__init__.py": "from tattler_etcd.errors import X\n",
        "tattler_etcd/codec/_api.py": (
            "import json\n"
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from tattler_etcd.data import Entry\n"
            "def f():\n"
            "    from ..pipeline import safety\n"
            "    import tattler_etcd.readers.etcd\n"
            "    from tattler_etcd import Runner, codec\n"
        ),
        "tattler_etcd/data.py": "from tattler_etcd import codec\n",
        "tattler_etcd/pipeline/__init__.py": "",
        "tattler_etcd/pipeline/safety.py": "from . import batching\nfrom tattler_etcd.data import Entry\n",
        "tattler_etcd/readers/__init__.py": "",
        "tattler_etcd/readers/etcd/__init__.py": "from tattler_etcd.readers import Reader\n",
        "tattler_etcd/readers/apiserver/__init__.py": "from tattler_etcd.readers.etcd import keys\n",
    })
    assert violations(modules, tmp_path) == [
        "tattler_etcd/codec/_api.py:4: tattler_etcd.codec._api (codec) imports tattler_etcd.data (data), a higher layer",
        "tattler_etcd/codec/_api.py:6: tattler_etcd.codec._api (codec) imports tattler_etcd.pipeline.safety "
        "(pipeline), a higher layer",
        "tattler_etcd/codec/_api.py:7: tattler_etcd.codec._api (codec) imports tattler_etcd.readers.etcd "
        "(readers), a higher layer",
        "tattler_etcd/codec/_api.py:8: tattler_etcd.codec._api (codec) imports tattler_etcd (front), a higher layer",
        "tattler_etcd/readers/apiserver/__init__.py:1: tattler_etcd.readers.apiserver imports tattler_etcd.readers.etcd: "
        "tattler_etcd.readers.etcd and tattler_etcd.readers.apiserver stay apart",
    ]


@pytest.mark.parametrize(("module", "layer"), [
    ("tattler_etcd", "front"),
    ("tattler_etcd.errors", "base"),
    ("tattler_etcd.codec.wire", "codec"),
    ("tattler_etcd.readers.memory", "readers"),
    ("tattler_etcd.delivery.nats", "pipeline"),
    ("tattler_etcd.cli._run", "front"),
])
def test_layer_of(module: str, layer: str) -> None:
    index = layer_of(module)
    assert index is not None and LAYERS[index][0] == layer


def test_a_new_top_level_module_has_no_layer_until_placed() -> None:
    assert layer_of("tattler_etcd.rules") is None
