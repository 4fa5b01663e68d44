"""Lazy re-exports for a package's ``__init__`` (PEP 562): a name is imported when first read.

Why: every ``tattler-etcd`` command, and every ``import tattler_etcd.<anything>``,
runs the package root first. When the root imported its re-exports eagerly,
``tattler-etcd --version`` paid for trio, httpx, etcd3gw, the APIServer
reader, prometheus-client and the codec (about 0.4 s) before printing one
line, and ``run`` against etcd paid for the APIServer reader it never uses.

A package using this lists its names twice, on purpose: once under
``if TYPE_CHECKING:`` as ordinary imports (what type checkers, editors and
``tests/test_layers.py`` read), and once as the ``{name: module}`` map given
to :func:`lazy_exports` (what runs). ``tests/test_lazy_exports.py`` checks
that the two agree and that every name of ``__all__`` resolves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    namespace: MutableMapping[str, Any], names: Mapping[str, str],
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of the package whose ``globals()`` is ``namespace``.

    ``names`` maps each re-exported name to the module that defines it. A
    name is imported on first access and then kept in the package's
    namespace, so later reads cost a dict lookup. Any other name is tried as
    a submodule (``tattler_etcd.codec`` after a bare ``import tattler_etcd``,
    as when the root imported it as a side effect); failing that, the usual
    ``AttributeError``.
    """
    package = str(namespace["__name__"])

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module), name)
        elif name.startswith("__"):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        else:
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise  # the submodule exists and failed to import something of its own
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
