"""Helpers for the etcd reader's tests: objects to store, and consumers that track state.

Objects are JSON (as the APIServer stores custom resources, or any kind with
``--storage-media-type=application/json``) unless a test encodes protobuf
with the codec itself.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import trio

from tattler_etcd.data import ChangeType, Entry

KINDS = {
    "pods": ("v1", "Pod"), "minions": ("v1", "Node"), "namespaces": ("v1", "Namespace"),
    "persistentvolumes": ("v1", "PersistentVolume"), "example.com/widgets": ("example.com/v1", "Widget"),
}


def obj(segment: str, name: str, namespace: str | None = None, *, uid: str | None = None, **spec: Any) -> bytes:
    """A JSON object as stored under ``/registry/<segment>/...`` (no resourceVersion, as etcd has it)."""
    api_version, kind = KINDS[segment]
    meta: dict[str, Any] = {"name": name, "uid": uid or str(uuid.uuid4())}
    if namespace:
        meta["namespace"] = namespace
    return json.dumps({"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": spec}).encode()


def key(segment: str, name: str, namespace: str | None = None) -> str:
    return f"/registry/{segment}/{namespace}/{name}" if namespace else f"/registry/{segment}/{name}"


class Tracker:
    """Consumes a reader's channel, keeps the state it implies, and lets tests wait on it.

    ``state``: key -> resource_version of every live object; ``seen``: every
    (key, change, resource_version) in order; a DELETE removes the key.
    """

    def __init__(self) -> None:
        self.state: dict[str, str] = {}
        self.uids: dict[str, str] = {}
        self.seen: list[tuple[str, ChangeType, str]] = []
        self.entries: list[Entry] = []
        self.chunks = 0
        self.closed = False
        self._changed = trio.Condition()

    async def consume(self, recv: trio.MemoryReceiveChannel[list[Entry]]) -> None:
        async with recv:
            async for chunk in recv:
                self.chunks += 1
                for e in chunk:
                    self.entries.append(e)
                    self.seen.append((e.key, e.change, e.resource_version))
                    if e.change is ChangeType.DELETE:
                        self.state.pop(e.key, None)
                    else:
                        self.state[e.key] = e.resource_version
                        self.uids[e.key] = e.uid
                async with self._changed:
                    self._changed.notify_all()
        self.closed = True
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with self._changed:
            while not predicate():
                if self.closed:
                    raise AssertionError("the reader closed its channel before the condition held")
                await self._changed.wait()


def etcd_state(etcd: Any, prefixes: list[str]) -> dict[str, str]:
    """key -> str(mod_revision) of every key under ``prefixes``, as etcd has them now."""
    out = {}
    for p in prefixes:
        for kv in etcd.range_prefix(p):
            out[kv["key"]] = str(kv["mod_revision"])
    return out


class HookTransport(httpx.AsyncBaseTransport):
    """A real transport with a hook run before each request (to land writes between pages, hold watches)."""

    def __init__(self, hook: Callable[[httpx.Request], Awaitable[None]]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._hook = hook
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        await self._hook(request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
