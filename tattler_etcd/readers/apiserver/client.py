"""HTTP list and watch against the APIServer, over one ``httpx.AsyncClient``.

This is the only module of the reader that does I/O. It speaks both wire
formats and hands the reader format-neutral results:

* a LIST page is its version, its continue token and its items, each either
  a JSON dict (with ``apiVersion``/``kind`` filled in: the APIServer leaves
  them out of list items) or a protobuf envelope (``k8s\\0`` + Unknown),
  undecoded;
* a WATCH is a stream of chunks of ``(type, object)`` pairs, one chunk per
  network read, where the object is a dict or an envelope.

Protobuf is asked for with ``Accept: application/vnd.kubernetes.protobuf,
application/json``: the APIServer answers custom resources (JSON-only) in
JSON, so the fall-back is per resource and costs no extra request. The
response's ``Content-Type`` says which format came back.

Failures become our typed errors here, at the boundary (httpx's and the
codec's never leak past it): 401/403 -> :class:`AccessDeniedError` naming
the resource; 410 -> :class:`HistoryCompactedError`; 429 and 5xx and broken
connections -> :class:`TransientReaderError` (with ``Retry-After``); other
4xx -> :class:`PermanentReaderError`. Messages quote at most 256 characters
of the server's Status message and never a body.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Self, cast

import httpx
import trio

from tattler_etcd import codec
from tattler_etcd.errors import (
    AccessDeniedError,
    CodecError,
    ConfigError,
    HistoryCompactedError,
    PermanentReaderError,
    ReaderError,
    SchemeMismatchError,
    TransientReaderError,
)
from tattler_etcd.readers import _tls
from tattler_etcd.readers._httpclient import abandon, async_client
from tattler_etcd.readers.apiserver.config import ClusterConfig
from tattler_etcd.readers.apiserver.watch import FrameParser, JsonLinesParser, gc_paused

__all__ = [
    "ACCEPT_JSON",
    "ACCEPT_PROTOBUF",
    "WATCH_IDLE_GRACE",
    "APIClient",
    "ListPage",
    "ResourceRef",
    "WatchListRejected",
    "WatchObject",
    "WatchStream",
    "pending_error",
    "status_error",
    "status_of",
]

log = logging.getLogger(__name__)

PROTOBUF = "application/vnd.kubernetes.protobuf"
#: Protobuf preferred, JSON accepted: the server picks JSON for custom resources.
ACCEPT_PROTOBUF = f"{PROTOBUF}, application/json"
ACCEPT_JSON = "application/json"

#: Connect, write and pool timeouts; reads get their own (a LIST page of a
#: big cluster can take a while to be produced, a watch may be quiet for minutes).
CONNECT_TIMEOUT = 30.0
#: The longest a LIST response may stay silent.
LIST_READ_TIMEOUT = 120.0
#: How long past its ``timeoutSeconds`` a silent watch is still given before
#: it counts as a dead connection (the server ends it on time when it can).
WATCH_IDLE_GRACE = 30.0

#: Object = dict (JSON) or bytes (protobuf envelope, undecoded).
WatchObject = dict[str, Any] | bytes


@dataclass(frozen=True)
class ResourceRef:
    """One resource type on the server, as discovery described it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def name(self) -> str:
        """``pods``, ``deployments.apps``, ``widgets.example.com``: names keys, counters, bookmarks."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def path(self) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{base}/{self.plural}"


@dataclass
class ListPage:
    """One LIST page, format-neutral."""

    resource_version: str
    continue_token: str
    items: list[WatchObject]
    protobuf: bool
    remaining: int | None = None


class WatchListRejected(ReaderError):
    """The server refused ``sendInitialEvents`` (400/422): use LIST for this resource.

    An internal signal between the client and the reader, not something a
    caller of the reader ever sees.
    """


def _status_message(body: bytes) -> tuple[str, str]:
    try:
        doc = json.loads(body)
    except ValueError:
        return "", ""
    if not isinstance(doc, dict):
        return "", ""
    return str(doc.get("reason") or ""), str(doc.get("message") or "")[:256]


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from the APIServer; fall back to our backoff


def status_error(code: int, reason: str, message: str, *, what: str,
                 retry_after: float | None = None) -> ReaderError:
    """The typed error for a failed request or an ERROR watch event."""
    detail = f"{code} {reason}".strip() + (f": {message}" if message else "")
    err: ReaderError
    if code in (401, 403):
        hint = ("the credentials were refused" if code == 401
                else "the account may not do this (check RBAC)")
        err = AccessDeniedError(f"{what}: {detail} ({hint})")
    elif code == 410:
        err = HistoryCompactedError(f"{what}: {detail}")
    elif code == 429 or code >= 500 or code in (408, 0):
        err = TransientReaderError(f"{what}: {detail}", retry_after=retry_after)
    else:
        err = PermanentReaderError(f"{what}: {detail}")
    setattr(err, "http_status", code)  # noqa: B010 - read back by status_of()
    return err


def status_of(exc: BaseException) -> int | None:
    """The HTTP status behind an error made by :func:`status_error`, if any."""
    code = getattr(exc, "http_status", None)
    return code if isinstance(code, int) else None


class WatchStream:
    """An open watch response; :meth:`chunks` yields lists of ``(type, object)``."""

    def __init__(self, response: httpx.Response, *, what: str, api_version: str, kind: str,
                 idle_timeout: float = math.inf) -> None:
        self.response = response
        self.protobuf = response.headers.get("content-type", "").startswith(PROTOBUF)
        self._what = what
        self._idle = idle_timeout

    async def _reads(self) -> AsyncGenerator[bytes, None]:
        """The body, read by read; a read that waits longer than the idle limit is a dead connection.

        Bookmarks (asked for by the reader) and the server's own end at
        ``timeoutSeconds`` keep a live watch from being silent that long.
        """
        raw = _raw_body(self.response)
        try:
            while True:
                with trio.move_on_after(self._idle) as idle:
                    try:
                        data = await raw.__anext__()
                    except StopAsyncIteration:
                        return
                if idle.cancelled_caught:
                    raise TransientReaderError(
                        f"{self._what}: nothing received for {self._idle:g} s: a dead connection")
                yield data
        finally:
            await abandon(self.response, raw)

    async def chunks(self) -> AsyncIterator[list[tuple[str, WatchObject]]]:
        """Events, one list per network read, until the server ends the stream.

        Raises:
            HistoryCompactedError, TransientReaderError, AccessDeniedError:
                an ERROR event (after the events before it were yielded),
                a broken connection, a corrupt stream.
        """
        what = self._what
        if self.protobuf:
            frames = FrameParser(what=what)
            try:
                async with contextlib.aclosing(self._reads()) as raw:
                    async for data in raw:
                        events = []
                        for frame in frames.feed(data):
                            try:
                                kind, obj = codec.decode_watch_event(frame)
                            except CodecError as exc:
                                raise TransientReaderError(f"{what}: an unreadable watch frame: {exc}") from exc
                            events.append((kind, obj))
                        if events:
                            yield _split_error(events, what)
                frames.close()
            except httpx.HTTPError as exc:
                raise TransientReaderError(f"{what}: the watch broke: {type(exc).__name__}") from exc
            return
        lines = JsonLinesParser(what=what)
        try:
            async with contextlib.aclosing(self._reads()) as raw:
                async for data in raw:
                    parsed = lines.feed(data)
                    if parsed:
                        yield _split_error([(str(e.get("type", "")), e.get("object")) for e in parsed], what)
            tail = lines.close()
            if tail:
                yield _split_error([(str(e.get("type", "")), e.get("object")) for e in tail], what)
        except httpx.HTTPError as exc:
            raise TransientReaderError(f"{what}: the watch broke: {type(exc).__name__}") from exc


def _raw_body(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    # aiter_bytes, not aiter_raw: it undoes a Content-Encoding (httpx asks
    # for gzip), and it also serves a body that was read already, as replay
    # engines hand them over. httpx types it as an AsyncIterator; it is a
    # generator, and closing it promptly matters when a watch is left early.
    return cast(AsyncGenerator[bytes, None], response.aiter_bytes())


class _ErrorAfter(list[tuple[str, WatchObject]]):
    """A chunk whose last event was an ERROR; ``error`` is raised once the rest is used."""

    error: ReaderError | None = None


def _split_error(events: list[tuple[str, Any]], what: str) -> list[tuple[str, WatchObject]]:
    for i, (kind, obj) in enumerate(events):
        if kind == "ERROR":
            chunk = _ErrorAfter(events[:i])
            chunk.error = _event_error(obj, what)
            return chunk
    return events


def _event_error(obj: Any, what: str) -> ReaderError:
    status: dict[str, Any] = {}
    if isinstance(obj, dict):
        status = obj
    elif isinstance(obj, bytes):
        try:
            status = codec.decode(obj)
        except CodecError:
            status = {}
    code = status.get("code")
    code = int(code) if isinstance(code, int) else 500
    return status_error(code, str(status.get("reason") or ""), str(status.get("message") or "")[:256],
                        what=f"{what} (watch ERROR event)")


def pending_error(chunk: list[tuple[str, WatchObject]]) -> ReaderError | None:
    """The error a chunk ended with (an ERROR event), if any."""
    return chunk.error if isinstance(chunk, _ErrorAfter) else None


class APIClient:
    """List and watch over one ``httpx.AsyncClient``.

    Give ``config`` to let it build the client (TLS, proxy), or an ``http``
    client of your own (record/replay engines inject theirs; its base URL
    must point at the APIServer). Either way credentials come from
    ``config`` when given.
    """

    def __init__(self, config: ClusterConfig | None = None, *, http: httpx.AsyncClient | None = None,
                 watch_idle_timeout: float | None = None) -> None:
        if config is None and http is None:
            raise ConfigError("APIClient needs a ClusterConfig or an httpx.AsyncClient")
        if watch_idle_timeout is not None and not watch_idle_timeout > 0:
            raise ConfigError(f"watch idle timeout: must be more than 0 seconds, not {watch_idle_timeout!r}")
        self.config = config
        #: A watch silent this long is a dead connection (None: ``timeoutSeconds``
        #: plus :data:`WATCH_IDLE_GRACE`, when the watch asked for a timeout).
        self.watch_idle_timeout = watch_idle_timeout
        self._own = http is None
        if http is None:
            assert config is not None
            http = async_client(  # closes a socket whose TLS handshake was cancelled (readers/_httpclient.py)
                base_url=config.server,
                verify=config.ssl_context if config.ssl_context is not None else True,
                proxy=config.proxy,
                timeout=httpx.Timeout(CONNECT_TIMEOUT, read=LIST_READ_TIMEOUT),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=20),
                trust_env=False,
            )
        self.http = http
        self._extensions: dict[str, Any] = {}
        if config is not None and config.tls_server_name:
            self._extensions["sni_hostname"] = config.tls_server_name

    async def aclose(self) -> None:
        if self._own:
            await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _headers(self, accept: str) -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": "tattler-etcd"}
        if self.config is not None:
            headers.update(await self.config.auth_headers())
        return headers

    async def _send(self, method: str, path: str, *, what: str, params: Mapping[str, str] | None = None,
                    accept: str = ACCEPT_JSON, stream: bool = False, json_body: Any = None,
                    timeout: httpx.Timeout | None = None) -> httpx.Response:
        for attempt in range(2):
            headers = await self._headers(accept)
            kwargs: dict[str, Any] = {}
            if json_body is not None:
                kwargs["content"] = json.dumps(json_body).encode()
                headers["Content-Type"] = "application/json"
            request = self.http.build_request(method, path, params=params, headers=headers,
                                              extensions=dict(self._extensions), timeout=timeout or
                                              httpx.USE_CLIENT_DEFAULT, **kwargs)
            try:
                response = await self.http.send(request, stream=stream)
            except httpx.TransportError as exc:
                raise await self._failed(exc, request, what) from exc
            except httpx.HTTPError as exc:
                detail = str(exc) or str(exc.__cause__ or exc.__context__ or "")
                raise TransientReaderError(f"{what}: {type(exc).__name__}: {detail[:200]}") from exc
            if response.status_code < 400:
                return response
            try:
                body = await response.aread()
            except httpx.HTTPError:
                body = b""
            finally:
                await response.aclose()
            if response.status_code == 400 and _tls.PLAIN_HTTP_TO_TLS in body:
                raise SchemeMismatchError(
                    f"{what}: {request.url.scheme}://{request.url.netloc.decode()} speaks TLS: use https:// "
                    "(plain HTTP to a TLS port)")
            # A 401 with a refreshable credential (exec plugin, rotated
            # service-account token): refresh once and try again.
            if (response.status_code == 401 and attempt == 0 and self.config is not None
                    and await self.config.refresh_after_unauthorized()):
                continue
            reason, message = _status_message(body)
            raise status_error(response.status_code, reason or response.reason_phrase, message, what=what,
                               retry_after=_retry_after(response.headers.get("retry-after")))
        raise AssertionError("unreachable")

    async def _failed(self, exc: httpx.TransportError, request: httpx.Request, what: str) -> ReaderError:
        """The typed error for a request that got no answer: TLS mistakes named and permanent."""
        detail = str(exc) or str(exc.__cause__ or exc.__context__ or "")
        err = await _tls.translate(
            exc, url=str(request.url), what=what,
            context=self.config.ssl_context if self.config is not None else None,
            client_cert=None, server_name=self.config.tls_server_name if self.config is not None else None,
            probe=self.config is not None and not self.config.proxy,
        )
        if isinstance(err, TransientReaderError):
            # The message httpx gave (with its cause), as before.
            return TransientReaderError(f"{what}: {type(exc).__name__}: {detail[:200]}")
        return err

    async def get_json(self, path: str, *, what: str) -> Any:
        """GET a JSON document (discovery, a ConfigMap)."""
        response = await self._send("GET", path, what=what)
        try:
            return response.json()
        except ValueError as exc:
            raise TransientReaderError(f"{what}: the response is not JSON") from exc

    async def send_json(self, method: str, path: str, body: Any, *, what: str) -> Any:
        response = await self._send(method, path, what=what, json_body=body)
        try:
            return response.json()
        except ValueError as exc:
            raise TransientReaderError(f"{what}: the response is not JSON") from exc

    async def discover(self, spec: str) -> ResourceRef:
        """``pods`` (core first, then every group), ``deployments.apps``, ``widgets.example.com``.

        Raises:
            ConfigError: the server has no such resource, or it cannot be listed and watched.
        """
        plural, _, group = spec.partition(".")
        if not plural:
            raise ConfigError(f"resource {spec!r}: give a plural, e.g. pods or widgets.example.com")
        candidates: list[tuple[str, str]] = []
        if not group:
            candidates.append(("", "v1"))
        doc = await self.get_json("/apis", what="discovery /apis")
        for g in doc.get("groups") or []:
            name = g.get("name", "")
            if group and name != group:
                continue
            preferred = (g.get("preferredVersion") or {}).get("version")
            if preferred:
                candidates.append((name, preferred))
        for g, v in candidates:
            path = f"/apis/{g}/{v}" if g else f"/api/{v}"
            try:
                listing = await self.get_json(path, what=f"discovery {path}")
            except PermanentReaderError as exc:
                if isinstance(exc, AccessDeniedError):
                    raise
                continue
            for r in listing.get("resources") or []:
                if r.get("name") == plural:
                    verbs = set(r.get("verbs") or [])
                    if not {"list", "watch"} <= verbs:
                        raise ConfigError(f"resource {spec!r}: the server cannot list and watch it")
                    return ResourceRef(g, v, plural, str(r.get("kind", "")), bool(r.get("namespaced")))
        raise ConfigError(f"resource {spec!r}: the server has no such resource")

    async def list_page(self, ref: ResourceRef, params: Mapping[str, str], *, protobuf: bool) -> ListPage:
        """One LIST page.

        Raises:
            HistoryCompactedError: the continue token (or version) expired;
            AccessDeniedError, TransientReaderError, PermanentReaderError.
        """
        what = f"list {ref.name}"
        response = await self._send("GET", ref.path, what=what, params=params,
                                    accept=ACCEPT_PROTOBUF if protobuf else ACCEPT_JSON, stream=True)
        try:
            body = await response.aread()
        except httpx.HTTPError as exc:
            raise TransientReaderError(f"{what}: {type(exc).__name__} reading the list") from exc
        finally:
            await response.aclose()
        if response.headers.get("content-type", "").startswith(PROTOBUF):
            try:
                list_meta, envelopes = codec.split_list(body)
            except CodecError as exc:
                raise TransientReaderError(f"{what}: an unreadable protobuf list: {exc}") from exc
            return ListPage(str(list_meta.get("resourceVersion") or ""), str(list_meta.get("continue") or ""),
                            list[WatchObject](envelopes), True, list_meta.get("remainingItemCount"))
        try:
            with gc_paused():
                doc = json.loads(body)
        except ValueError as exc:
            raise TransientReaderError(f"{what}: the list is not JSON") from exc
        meta = doc.get("metadata") or {}
        kind = str(doc.get("kind") or "")
        kind = kind[:-4] if kind.endswith("List") else ref.kind
        api_version = str(doc.get("apiVersion") or ref.api_version)
        items: list[WatchObject] = []
        for item in doc.get("items") or []:
            if "kind" not in item or "apiVersion" not in item:
                item = {"apiVersion": api_version, "kind": kind, **item}
            items.append(item)
        return ListPage(str(meta.get("resourceVersion") or ""), str(meta.get("continue") or ""),
                        items, False, meta.get("remainingItemCount"))

    @contextlib.asynccontextmanager
    async def watch(self, ref: ResourceRef, params: Mapping[str, str], *,
                    protobuf: bool) -> AsyncIterator[WatchStream]:
        """Open a watch; the response is closed when the block ends.

        Raises:
            WatchListRejected: 400/422 to a ``sendInitialEvents`` request.
        """
        what = f"watch {ref.name}"
        # No read timeout: a quiet resource may send nothing for minutes; the
        # reader bounds the whole watch with a deadline of its own.
        try:
            response = await self._send("GET", ref.path, what=what, params=params,
                                        accept=ACCEPT_PROTOBUF if protobuf else ACCEPT_JSON, stream=True,
                                        timeout=httpx.Timeout(CONNECT_TIMEOUT, read=None))
        except PermanentReaderError as exc:
            if params.get("sendInitialEvents") == "true" and not isinstance(exc, AccessDeniedError):
                raise WatchListRejected(str(exc)) from exc
            raise
        idle = self.watch_idle_timeout
        if idle is None and params.get("timeoutSeconds", "").isdigit():
            # The server ends the watch after timeoutSeconds; silence well past
            # that means nothing reaches us any more.
            idle = int(params["timeoutSeconds"]) + WATCH_IDLE_GRACE
        try:
            yield WatchStream(response, what=what, api_version=ref.api_version, kind=ref.kind,
                              idle_timeout=idle if idle is not None else math.inf)
        finally:
            await response.aclose()
