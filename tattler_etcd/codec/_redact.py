"""Placeholder."""
from typing import Any
def redact(value: bytes, paths: Any, fn: Any) -> tuple[bytes, int]:
    raise NotImplementedError
