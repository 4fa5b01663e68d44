"""The clone stands alone and packages what users need: no outside paths, the README's two commands, metadata."""

from __future__ import annotations

import re
import subprocess
from importlib.metadata import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Written split so this file does not name what it looks for.
OUTSIDE = re.compile("|".join([r"\.\./" + "shared", "/work/" + "shared"]))


def _tracked() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        return [ROOT / p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):  # an unpacked sdist: no git
        return [p for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts and ".git" not in p.parts]


def test_nothing_reads_a_folder_beside_the_clone() -> None:
    offenders = []
    for path in _tracked():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if OUTSIDE.search(text):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"these files reach outside the repository: {offenders}"


def test_the_readme_commands_are_the_scripts_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    first = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first.strip().splitlines()] == [
        ["bash", "scripts/run.sh"], ["bash", "scripts/test.sh"]]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
    assert ci[-1] == "bash scripts/test.sh"


def test_setup_is_quiet_when_everything_is_there() -> None:
    for _ in range(2):  # the first run may still have a step to take (pyproject.toml changed since)
        done = subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    assert done.stdout == "", done.stdout  # a line per step taken; none taken the second time


def test_the_pytest_extra_and_urls_are_in_the_metadata() -> None:
    meta = metadata("tattler-etcd")
    assert "pytest" in (meta.get_all("Provides-Extra") or [])
    requires = meta.get_all("Requires-Dist") or []
    for dist in ("pytest", "pytest-trio"):
        assert any(re.match(rf"{dist}\b.*extra == \"pytest\"", r) for r in requires), (dist, requires)
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())
    assert meta["License-Expression"] == "Apache-2.0" or meta["License"] == "Apache-2.0"
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")
