"""What starting imports: ``--version`` and ``--help`` almost nothing, ``run`` against etcd what reading etcd
needs, the pytest plugin nothing until a test asks for its fixture.

Each case runs the command in a fresh interpreter (this test process has
imported everything already) and lists ``sys.modules`` once it returned. The
lists below are modules the case must not load; the reasons (what each costs)
are in ``tattler_etcd/cli/_run.py`` and ``docs/performance.md``. A module that
turns up here was imported at the top of something the case runs: import it
in the function that needs it, with its measured cost beside it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tattler_etcd import codec
from tests.support.etcd import EtcdServer
from tests.support.etcd_reading import key

ROOT = Path(__file__).resolve().parents[1]

#: Runs ``tattler_etcd.cli.main(argv)`` and writes the loaded modules' names as JSON to argv[1].
_WRAPPER = """
import json, sys
out, argv = sys.argv[1], sys.argv[2:]
from tattler_etcd.cli import main
try:
    status = main(argv)
except SystemExit as exc:
    status = exc.code
with open(out, "w") as f:
    json.dump({"status": status, "modules": sorted(sys.modules)}, f)
"""

#: Never for reading etcd into a file: the APIServer side, metrics, the recorder, YAML.
NOT_FOR_RUN = (
    "etcd3gw", "requests", "urllib3", "kubernetes", "prometheus_client", "hypercorn", "yaml", "vcr",
    "pytest", "tattler_etcd.readers.apiserver", "tattler_etcd.replay", "tattler_etcd.delivery",
    "tattler_etcd.pipeline._collector", "tattler_etcd.service.http",
)

#: Not for printing a version or the help either: the async stack, the HTTP clients, the codec, the pipeline.
NOT_FOR_THE_PARSER = NOT_FOR_RUN + (
    "trio", "httpx", "httpcore", "h2", "google.protobuf", "orjson", "pybase64", "importlib.metadata",
    "tattler_etcd.codec", "tattler_etcd.data", "tattler_etcd.pipeline", "tattler_etcd.readers.etcd.reader",
    "tattler_etcd.readers.etcd.gateway",
)


def _modules(tmp_path: Path, *argv: str) -> tuple[object, list[str]]:
    out = tmp_path / "modules.json"
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, str(out), *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert out.exists(), f"the command did not finish: {proc.stderr[-2000:]}"
    doc = json.loads(out.read_text())
    return doc["status"], doc["modules"]


def _loaded(modules: list[str], denied: tuple[str, ...]) -> list[str]:
    """The modules of ``modules`` that are, or are under, a name of ``denied``."""
    return [m for m in modules if any(m == d or m.startswith(d + ".") for d in denied)]


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["run", "--help"], ["run", "--version"]])
def test_the_parser_imports_almost_nothing(tmp_path: Path, argv: list[str]) -> None:
    status, modules = _modules(tmp_path, *argv)
    assert status == 0
    assert _loaded(modules, NOT_FOR_THE_PARSER) == []


@pytest.mark.etcd
def test_run_against_etcd_imports_only_what_reading_etcd_needs(etcd: EtcdServer, tmp_path: Path) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "ns", "uid": "u-1"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    etcd.put(key("pods", "a", "ns"), codec.encode(pod))
    out = tmp_path / "out.jsonl"
    status, modules = _modules(tmp_path, "run", "--endpoints", etcd.url, "--resources", "pods", "--once",
                               "--to", str(out))
    assert status == 0
    assert json.loads(out.read_text())["name"] == "a"  # it did read and write
    assert {"trio", "httpx", "tattler_etcd.readers.etcd.reader", "tattler_etcd.codec"} <= set(modules)
    assert _loaded(modules, NOT_FOR_RUN) == []


def test_the_checker_sees_a_denied_module(tmp_path: Path) -> None:
    status, modules = _modules(tmp_path, "--version")
    assert status == 0
    assert _loaded(modules + ["yaml", "yaml.nodes", "yamlish"], ("yaml",)) == ["yaml", "yaml.nodes"]


def test_the_pytest_plugin_loads_the_harness_only_for_a_test_that_uses_it() -> None:
    """pytest imports the plugin (entry point ``pytest11``) in every session of every project that installs us."""
    code = ("import json, sys\nimport tattler_etcd.pytest_plugin as p\nbefore = sorted(sys.modules)\n"
            "p.ReplayHarness\nprint(json.dumps([before, sorted(sys.modules)]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    before, after = json.loads(proc.stdout)
    heavy = ("trio", "vcr", "tattler_etcd.pipeline", "tattler_etcd.replay", "tattler_etcd.codec")
    assert _loaded(before, heavy) == []
    assert "tattler_etcd.replay._harness" in after  # and the names are still there
