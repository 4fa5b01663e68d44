"""Run the installed ``tattler-etcd`` console script, as a user does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping


def exe() -> str:
    """The console script beside the interpreter running the tests (the venv's ``bin``)."""
    found = shutil.which("tattler-etcd", path=os.path.dirname(sys.executable))
    assert found, f"tattler-etcd is not installed beside {sys.executable} (run scripts/setup.sh)"
    return found


def run(
    *args: str, env: Mapping[str, str] | None = None, input: str | bytes | None = None, timeout: float = 60,
    cwd: str | None = None, text: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``tattler-etcd ARGS`` in a subprocess; ``env`` adds to (or, with a None value, removes from) ours."""
    full = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    return subprocess.run([exe(), *args], capture_output=True, text=text, input=input, timeout=timeout,
                          env=full, cwd=cwd)
