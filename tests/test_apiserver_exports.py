"""Every module of the APIServer reader declares a sorted ``__all__`` naming its public members."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = ["bookmarks", "client", "config", "reader", "rv", "watch"]


def isort_key(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions: the order ruff's RUF022 keeps."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(f"tattler_etcd.readers.apiserver.{name}")
    exported = list(module.__all__)
    assert exported == sorted(exported, key=isort_key)
    defined = {
        n for n, v in vars(module).items()
        if not n.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))
        and getattr(v, "__module__", None) == module.__name__
    }
    assert defined <= set(exported), f"public but not exported: {sorted(defined - set(exported))}"
    for n in exported:
        assert hasattr(module, n)


def test_package_reexports() -> None:
    package = importlib.import_module("tattler_etcd.readers.apiserver")
    assert package.__all__ == sorted(package.__all__, key=isort_key)
    for n in package.__all__:
        # Its own modules, or the reflector core both readers share (Backoff).
        assert getattr(package, n).__module__.startswith(("tattler_etcd.readers.apiserver.",
                                                          "tattler_etcd.readers._reflector"))
