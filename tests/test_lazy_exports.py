"""The lazy re-exports (``tattler_etcd/_lazy.py``): what type checkers read is what runs.

A module using :func:`~tattler_etcd._lazy.lazy_exports` names each re-export
twice: as an import under ``if TYPE_CHECKING:`` and in the ``{name: module}``
map. These tests read both with ``ast`` and fail when they differ, and check
that every name of ``__all__`` resolves, in a fresh interpreter, to the
object the defining module has.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lazy_modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / "tattler_etcd").rglob("*.py")):
        if "lazy_exports(globals()" in path.read_text(encoding="utf-8"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


LAZY = _lazy_modules()


def _both_lists(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(the TYPE_CHECKING imports, the lazy map), each as name -> defining module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            typed = {alias.asname or alias.name: str(imp.module) for imp in node.body
                     if isinstance(imp, ast.ImportFrom) for alias in imp.names}
            for stmt in node.orelse:
                if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call):
                    mapping = ast.literal_eval(stmt.value.args[1])
                    return typed, mapping
    raise AssertionError(f"{path}: no `if TYPE_CHECKING: ... else: ... = lazy_exports(...)` block")


def test_the_lazy_modules_are_found() -> None:
    assert {"tattler_etcd", "tattler_etcd.readers", "tattler_etcd.readers.etcd", "tattler_etcd.service",
            "tattler_etcd.pipeline.metrics"} <= set(LAZY)


@pytest.mark.parametrize("module", sorted(LAZY))
def test_type_checkers_see_what_runs(module: str) -> None:
    typed, mapping = _both_lists(LAZY[module])
    assert mapping == {name: source for name, source in typed.items() if name in mapping}
    if LAZY[module].name == "__init__.py":  # a package facade: every typed name is a re-export
        assert set(typed) == set(mapping)


@pytest.mark.parametrize("module", sorted(LAZY))
def test_every_name_resolves_in_a_fresh_interpreter(module: str) -> None:
    """``from module import *`` and each name, where nothing was imported before; same objects as the source's."""
    code = (f"import importlib, json, sys\nm = importlib.import_module({module!r})\n"
            f"ns = {{}}\nexec('from {module} import *', ns)\n"
            "print(json.dumps(sorted(n for n in m.__all__ if n not in ns)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(proc.stdout) == []
    mod = importlib.import_module(module)
    _, mapping = _both_lists(LAZY[module])
    for name, source in mapping.items():
        assert getattr(mod, name) is getattr(importlib.import_module(source), name)
    assert set(mod.__all__) <= set(dir(mod))


def test_the_root_still_reaches_its_subpackages_and_refuses_unknown_names() -> None:
    code = ("import tattler_etcd, sys\nassert 'tattler_etcd.codec' not in sys.modules\n"
            "print(tattler_etcd.codec.__name__, tattler_etcd.Runner.__module__)\n"
            "try:\n    tattler_etcd.no_such_thing\nexcept AttributeError as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.splitlines() == [
        "tattler_etcd.codec tattler_etcd.pipeline.runner",
        "module 'tattler_etcd' has no attribute 'no_such_thing'",
    ]
