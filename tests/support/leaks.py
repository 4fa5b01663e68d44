"""Looking for planted values everywhere they could hide: plain text, base64, JSON, YAML (cassettes)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from typing import Any

import yaml

_B64 = re.compile(rb"[A-Za-z0-9+/_-]{8,}={0,2}")


def _b64_forms(data: bytes, depth: int = 0) -> Iterable[bytes]:
    """``data``, and every base64 run in it decoded (standard and URL-safe, any padding), nested twice."""
    yield data
    if depth >= 2:
        return
    for m in _B64.finditer(data):
        token = m.group(0).rstrip(b"=")
        for alphabet in (None, b"-_"):
            for cut in range(4):  # a run may start mid-quantum when glued to other text
                piece = token[cut:]
                piece += b"=" * (-len(piece) % 4)
                try:
                    decoded = base64.b64decode(piece, altchars=alphabet, validate=True)
                except (binascii.Error, ValueError):
                    continue
                if decoded:
                    yield from _b64_forms(decoded, depth + 1)


def _strings(doc: Any) -> Iterable[bytes]:
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            yield node.encode("utf-8", "surrogatepass")
        elif isinstance(node, bytes):
            yield node


def _forms(text: bytes) -> Iterable[bytes]:
    yield from _b64_forms(text)
    # JSON lines and YAML documents: their strings, unescaped (a \\u escape or a YAML !!binary block).
    for line in text.splitlines():
        if line.strip()[:1] in (b"{", b"["):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            for s in _strings(doc):
                yield from _b64_forms(s)
    if b"interactions:" in text:
        doc = yaml.safe_load(text)
        for s in _strings(doc):
            yield from _b64_forms(s)
            if s[:1] in (b"{", b"["):
                for line in s.splitlines():
                    try:
                        inner = json.loads(line)
                    except ValueError:
                        continue
                    for s2 in _strings(inner):
                        yield from _b64_forms(s2)


def leaked(markers: Iterable[str], texts: dict[str, str | bytes]) -> dict[str, list[str]]:
    """marker -> the outputs it was found in (any form); empty when nothing leaked."""
    wanted = {m: m.encode() for m in markers}
    found: dict[str, list[str]] = {}
    for name, text in texts.items():
        data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        hits: set[str] = set()
        for form in _forms(data):
            for m, b in wanted.items():
                if b in form:
                    hits.add(m)
        for m in hits:
            found.setdefault(m, []).append(name)
    return found
