"""Where a reader keeps its resume versions between runs.

A restarted reader that still holds a valid resourceVersion can watch from it
instead of relisting everything: cheaper for the APIServer and for every
processor downstream. The store is a tiny async protocol (:class:`BookmarkStore`,
``load``/``save`` per resource name) with two implementations:

* :class:`FileBookmarkStore`: one JSON file, ``{"pods": "12345", ...}``, replaced
  atomically (write a temporary file, then rename) so a crash never leaves half a file.
* :class:`ConfigMapBookmarkStore`: one ConfigMap in the cluster, for readers
  that run in pods without a persistent volume. Writes use the ConfigMap's
  resourceVersion (optimistic concurrency) and re-read once on a conflict.

A version that is no longer valid is harmless: the watch gets a 410 and the
reader relists.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import trio

from tattler_etcd.errors import ConfigError, PermanentReaderError
from tattler_etcd.readers.apiserver.client import status_of

if TYPE_CHECKING:
    from tattler_etcd.readers.apiserver.client import APIClient

__all__ = ["BookmarkStore", "ConfigMapBookmarkStore", "FileBookmarkStore"]


@runtime_checkable
class BookmarkStore(Protocol):
    """Resume versions by resource name (``pods``, ``widgets.example.com``)."""

    async def load(self, resource: str) -> str | None:
        """The stored version, or None."""
        ...

    async def save(self, resource: str, resource_version: str) -> None:
        """Remember ``resource_version`` for ``resource``."""
        ...


class FileBookmarkStore:
    """A JSON file of ``{resource: resourceVersion}``.

    Raises (from :meth:`load`): ConfigError when the file exists but is not
    such a JSON object; the message names the file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._data: dict[str, str] | None = None
        self._lock = trio.Lock()

    def _read(self) -> dict[str, str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(f"bookmark file {self.path}: {exc.strerror}") from exc
        try:
            doc = json.loads(text) if text.strip() else {}
        except ValueError as exc:
            raise ConfigError(f"bookmark file {self.path}: not JSON ({exc})") from exc
        if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
            raise ConfigError(f"bookmark file {self.path}: not an object of resource -> resourceVersion")
        return {str(k): v for k, v in doc.items()}

    def _write(self, data: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # The file is a few hundred bytes, written at most every few seconds: a
    # plain write costs less than a hop to a worker thread, and keeps the
    # reader thread-free (so its tests can run on trio's virtual clock).

    async def load(self, resource: str) -> str | None:
        async with self._lock:
            if self._data is None:
                self._data = self._read()
            return self._data.get(resource)

    async def save(self, resource: str, resource_version: str) -> None:
        async with self._lock:
            if self._data is None:
                self._data = self._read()
            self._data[resource] = resource_version
            self._write(dict(self._data))


_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


class ConfigMapBookmarkStore:
    """A ConfigMap whose ``data`` maps resource names to versions.

    The account needs get, create and update on that one ConfigMap.
    """

    def __init__(self, client: APIClient, *, namespace: str, name: str) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self._path = f"/api/v1/namespaces/{namespace}/configmaps"
        self._lock = trio.Lock()

    @property
    def _what(self) -> str:
        return f"bookmark ConfigMap {self.namespace}/{self.name}"

    async def _get(self) -> dict[str, Any] | None:
        try:
            doc = await self.client.get_json(f"{self._path}/{self.name}", what=self._what)
        except PermanentReaderError as exc:
            if status_of(exc) == 404:
                return None
            raise
        return doc if isinstance(doc, dict) else None

    async def load(self, resource: str) -> str | None:
        async with self._lock:
            doc = await self._get()
            if doc is None:
                return None
            value = (doc.get("data") or {}).get(resource)
            return str(value) if value else None

    async def save(self, resource: str, resource_version: str) -> None:
        if not _KEY.match(resource):
            raise ConfigError(f"{self._what}: {resource!r} cannot be a ConfigMap key")
        async with self._lock:
            for attempt in range(2):
                doc = await self._get()
                if doc is None:
                    body = {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": self.name, "namespace": self.namespace},
                            "data": {resource: resource_version}}
                    try:
                        await self.client.send_json("POST", self._path, body, what=self._what)
                        return
                    except PermanentReaderError as exc:
                        if attempt == 0 and status_of(exc) == 409:
                            continue  # somebody created it meanwhile: update theirs
                        raise
                data = dict(doc.get("data") or {})
                data[resource] = resource_version
                doc["data"] = data
                try:
                    await self.client.send_json("PUT", f"{self._path}/{self.name}", doc, what=self._what)
                    return
                except PermanentReaderError as exc:
                    if attempt == 0 and status_of(exc) == 409:
                        continue  # changed under us: re-read and try once more
                    raise
