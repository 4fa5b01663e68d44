"""Every public module declares ``__all__``: sorted, resolvable, and complete.

Complete means every public class or function *defined* in the module is in
it, so nothing public is forgotten by ``from x import *``, the docs or type
checkers (the httpx meta-test, applied to the whole package).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from types import ModuleType

import pytest

import tattler_etcd


def _public_modules() -> list[str]:
    names = ["tattler_etcd"]
    for info in pkgutil.walk_packages(tattler_etcd.__path__, "tattler_etcd."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts[1:]) or info.name == "tattler_etcd.pytest_plugin":
            continue
        names.append(info.name)
    return sorted(names)


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions and the rest.
    if re.fullmatch(r"[A-Z0-9_]+", name) and len(name) > 1:
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


@pytest.mark.parametrize("name", _public_modules())
def test_all_is_sorted_resolvable_and_complete(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert list(exported) == sorted(exported, key=_isort_key), f"{name}.__all__ is not sorted"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not have: {missing}"
    defined = {
        n for n, obj in vars(module).items()
        if not n.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == name
    }
    assert defined <= set(exported), f"{name} defines public names not in __all__: {sorted(defined - set(exported))}"


def test_the_top_level_api_is_importable_in_one_line() -> None:
    from tattler_etcd import EtcdReader, Runner  # noqa: F401  (the docstring's example)

    assert tattler_etcd.Entry.__module__ == "tattler_etcd.data"
