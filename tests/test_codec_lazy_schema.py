"""The codec's schema loads on first use, once, even when threads race to it."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest

from tattler_etcd.codec import _schema
from tattler_etcd.codec._schema import META_PACKAGE, LazyClasses, Schema


def test_importing_the_whole_package_loads_no_schema() -> None:
    # In a fresh interpreter: this test process has long loaded it.
    script = (
        "import pkgutil, importlib, tattler_etcd\n"
        "for m in pkgutil.walk_packages(tattler_etcd.__path__, 'tattler_etcd.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "from tattler_etcd.codec._schema import SCHEMA\n"
        "print(SCHEMA.__dict__.get('_pending') is not None, 'messages' in SCHEMA.__dict__)\n"
        "from tattler_etcd import codec\n"
        "codec.decode(codec.encode({'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'a'}}))\n"
        "print(SCHEMA.__dict__.get('_pending') is not None, 'messages' in SCHEMA.__dict__)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split("\n") == ["True False", "False True", ""]


def test_the_protobuf_descriptor_modules_load_with_the_schema_not_with_the_package() -> None:
    script = (
        "import sys, tattler_etcd, tattler_etcd.cli, tattler_etcd.codec\n"
        "print('google.protobuf.descriptor_pool' in sys.modules)\n"
        "tattler_etcd.codec.peek(tattler_etcd.codec.wrap('v1', 'ConfigMap', b''))\n"
        "print('google.protobuf.descriptor_pool' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split("\n") == ["False", "True", ""]


def test_threads_racing_to_the_first_use_load_it_once() -> None:
    loads = []
    gate = threading.Barrier(4)

    def load() -> dict[str, Any]:
        loads.append(1)
        return _schema._read()

    lazy = Schema(load=load)
    results: list[str | None] = []

    def use() -> None:
        gate.wait()
        results.append(lazy.kind_message("apps/v1", "Deployment"))

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == [1]
    assert results == ["k8s.io.api.apps.v1.Deployment"] * 4
    assert lazy.meta_package == META_PACKAGE


def test_a_lazy_schema_still_refuses_unknown_attributes() -> None:
    lazy = Schema(load=_schema._read)
    with pytest.raises(AttributeError, match=r"^'Schema' object has no attribute 'nope'$"):
        lazy.nope  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(AttributeError):
        LazyClasses(Unknown="k8s.io.apimachinery.pkg.runtime.Unknown").Nope  # noqa: B018


def test_a_schema_for_another_meta_package_is_refused() -> None:
    data = _schema._read()
    data["meta_package"] = "k8s.io.other"
    with pytest.raises(RuntimeError, match=r"^schema: meta package 'k8s.io.other', expected "):
        Schema(data)
