"""Every complete code block in README.md and docs/*.md runs (the rules: docs/writing-docs.md).

One test per Markdown file; its blocks run in order in one empty temporary
directory, so a block may use what an earlier one wrote:

* ``python``: run with this interpreter; ``sh``/``bash``/``shell``: run with
  ``bash -eu -o pipefail``, the venv's ``tattler-etcd`` first on ``PATH``.
  ``127.0.0.1:2379`` and a bare ``etcdctl`` point at a test etcd holding a
  Pod ``default/web``, a Node, a Namespace and a PersistentVolume (started only
  for files whose blocks mention etcd).
* ``yaml``/``json``: must parse.
* ``<!-- file: NAME -->`` before a block: written as NAME, not run; a
  ``test_*.py`` file is then run with pytest (the plugin, pytest-trio).
* ``<!-- fragment -->`` (or ``<!-- fragment: why -->``) before a block: skipped.
* a block with no language, or another one (``text``, ``ini``...), is prose.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tattler_etcd import codec
from tests.support.etcd import EtcdServer

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = ROOT / "tests" / "data" / "k8s-api" / "HEAD"
RUN = {"python": "python", "py": "python", "sh": "sh", "bash": "sh", "shell": "sh"}
DATA = {"yaml": yaml.safe_load, "yml": yaml.safe_load, "json": json.loads}
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
_MARK = re.compile(r"^<!--\s*(?P<kind>fragment|file)\s*(?::\s*(?P<arg>.*?))?\s*-->$")
_LOCAL_ETCD = "127.0.0.1:2379"


@dataclasses.dataclass
class Block:
    doc: Path
    line: int
    lang: str
    text: str
    mark: str | None = None
    arg: str | None = None

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of ``path``, each with the marker on the last non-blank line before it."""
    lines = path.read_text(encoding="utf-8").split("\n")
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent, start = m.group("fence"), len(m.group("indent")), i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        i += 1
        before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        mark = _MARK.match(before)
        out.append(Block(path, start + 1, m.group("lang").lower(), "\n".join(body) + "\n",
                         mark.group("kind") if mark else None, mark.group("arg") if mark else None))
    return out


def _needs_etcd(bs: list[Block]) -> bool:
    return any(b.mark != "fragment" and b.lang in RUN and (_LOCAL_ETCD in b.text or "etcdctl" in b.text)
               for b in bs)


def _seed(server: EtcdServer) -> None:
    for kind, key, name, ns in [("Pod", "pods/default/web", "web", "default"), ("Node", "minions/node-1", "node-1", None),
                                ("Namespace", "namespaces/default", "default", None),
                                ("PersistentVolume", "persistentvolumes/pv-1", "pv-1", None)]:
        obj = json.loads((TESTDATA / f"core.v1.{kind}.json").read_text())
        meta = obj["metadata"]
        meta.update(name=name, uid=f"uid-{name}")
        meta.pop("resourceVersion", None)
        if ns:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        server.put(f"/registry/{key}", codec.encode(obj))


def _run(block: Block, cwd: Path, etcd: EtcdServer | None) -> None:
    text = block.text
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if etcd is not None:
        hostport = etcd.url.split("://", 1)[1]
        text = text.replace(_LOCAL_ETCD, hostport)
        env["TEST_ETCD"] = etcd.url
    if RUN[block.lang] == "python":
        script = cwd / f"_block_{block.line}.py"
        script.write_text(text)
        cmd = [sys.executable, str(script)]
    else:
        prelude = 'etcdctl() { command etcdctl --endpoints="$TEST_ETCD" "$@"; }\n' if etcd is not None else ""
        cmd = ["bash", "-euo", "pipefail", "-c", prelude + text]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, (
        f"{block.where} ({block.lang}) failed with {done.returncode}:\n{text}\n--- stdout\n{done.stdout[-3000:]}"
        f"\n--- stderr\n{done.stderr[-3000:]}"
    )


def _pytest(block: Block, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", block.arg or ""],
                          cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0, f"{block.where}: pytest {block.arg} failed:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"
    assert " passed" in done.stdout


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_code_blocks_of_each_doc_run(doc: Path, tmp_path: Path) -> None:
    bs = blocks(doc)
    etcd: EtcdServer | None = None
    if _needs_etcd(bs):
        etcd = EtcdServer()
        etcd.start()
    try:
        if etcd is not None:
            _seed(etcd)
        for b in bs:
            if b.mark == "fragment":
                continue
            if b.mark == "file":
                assert b.arg and "/" not in b.arg, f"{b.where}: <!-- file: NAME --> needs a plain file name"
                (tmp_path / b.arg).write_text(b.text)
                if re.fullmatch(r"test_\w*\.py", b.arg):
                    _pytest(b, tmp_path)
                continue
            if b.lang in DATA:
                try:
                    DATA[b.lang](b.text)
                except Exception as exc:  # noqa: BLE001 - named in the failure
                    pytest.fail(f"{b.where}: a {b.lang} block that does not parse: {exc}")
                continue
            if b.lang in RUN:
                _run(b, tmp_path, etcd)
    finally:
        if etcd is not None:
            etcd.close()


def test_the_block_rules_are_what_the_docs_say(tmp_path: Path) -> None:
    doc = ROOT / "docs" / "writing-docs.md"
    sample = tmp_path / "sample.md"
    sample.write_text(
        "x\n\n```python\nprint(1)\n```\n\n<!-- fragment: a signature -->\n\n```python\nf(x) -> y\n```\n"
        "<!-- file: pytest.ini -->\n```ini\n[pytest]\n```\n  ```sh\n  echo hi\n  ```\n```\ndiagram\n```\n"
    )
    got = [(b.line, b.lang, b.mark, b.arg, b.text) for b in blocks(sample)]
    assert got == [
        (3, "python", None, None, "print(1)\n"),
        (9, "python", "fragment", "a signature", "f(x) -> y\n"),
        (13, "ini", "file", "pytest.ini", "[pytest]\n"),
        (16, "sh", None, None, "echo hi\n"),
        (19, "", None, None, "diagram\n"),
    ]
    assert doc.is_file() and "<!-- fragment -->" in doc.read_text() and "<!-- file: NAME -->" in doc.read_text()
    # A misspelt marker would silently run (or not write) a block: refuse near misses.
    for path in doc_files():
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"<!--\s*([\w-]+)", text):
            word = m.group(1).lower()
            near = difflib.get_close_matches(word, ["fragment", "file"], n=1, cutoff=0.6)
            assert not near or word == near[0], f"{path.name}: <!-- {word} ...: did you mean <!-- {near[0]} -->?"
