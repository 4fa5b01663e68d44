"""etcd's HTTP/JSON gateway (``/v3/kv/range``, ``/v3/watch``) over ``httpx.AsyncClient``.

Why not etcd3gw's own calls: its ``get`` drops ``header.revision`` and
``more`` (a pager needs both), its watch iterators swallow errors and hang,
drop the created/progress/compaction messages and parse per HTTP chunk, and
its ``requests`` session blocks, so it would need worker threads, which trio
cannot cancel promptly and which break deterministic replay under a virtual
clock. So every request here goes through an ``httpx.AsyncClient`` that the
caller may inject (vcrpy records and replays it with no thread).

What we keep of etcd3gw is its endpoint conventions: :func:`endpoint_client`
turns a URL and the TLS files into an :class:`Endpoint` (the base URL as
``Etcd3Client.base_url`` writes it, IPv6 hosts in brackets, port 2379 by
default), and the API path discovery (``GET /version``: 3.4+ -> ``/v3/``,
3.3 -> ``/v3beta/``, older -> ``/v3alpha/``) follows its rules, done here on
httpx. etcd3gw itself is not imported: its client was only a holder for
those, and importing it (``requests``, ``futurist``, ``asyncio``) cost every
``tattler-etcd run`` ~75 ms.

This module is sans-policy: it translates replies and transport errors into
:mod:`tattler_etcd.errors` and leaves retrying to the reader.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import logging
import math
import os
import ssl
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import trio

from tattler_etcd.errors import (
    AccessDeniedError,
    ConfigError,
    HistoryCompactedError,
    NoSuchPathError,
    PermanentReaderError,
    ReaderError,
    SchemeMismatchError,
    TransientReaderError,
)
from tattler_etcd.readers import _tls
from tattler_etcd.readers._httpclient import abandon

__all__ = [
    "DEFAULT_PROGRESS_INTERVAL",
    "IDLE_INTERVALS",
    "Endpoint",
    "EtcdAuth",
    "Gateway",
    "KeyValue",
    "RangePage",
    "TLSFiles",
    "WatchEvent",
    "WatchMessage",
    "WatchStream",
    "endpoint_client",
    "ssl_context",
]

log = logging.getLogger("tattler_etcd.readers.etcd.gateway")

try:
    # SIMD base64: ~1 us for a 3 KB value where the standard library takes
    # ~8 us, the biggest share of the reader's own cost in a large list.
    from pybase64 import b64decode as _b64decode
except ImportError:  # pragma: no cover - pybase64 is a dependency; stay correct without it
    _b64decode = base64.b64decode  # type: ignore[assignment]

#: etcd's default ``--experimental-watch-progress-notify-interval``: how often an
#: idle watcher hears from etcd, unless the cluster's etcd was told otherwise.
DEFAULT_PROGRESS_INTERVAL = 600.0
#: A watch silent for this many progress intervals is dead. etcd's ticker
#: sends an idle watcher its notification between one and two intervals
#: after its last event; three leaves room for a busy server.
IDLE_INTERVALS = 3
#: A watch asked to end after ``timeout`` seconds (``Grpc-Timeout``) that is
#: still silent this long after that (or ``timeout`` more, if shorter) is dead
#: too: the APIServer reader's bound on ``timeoutSeconds``. It makes
#: dead-connection detection independent of the cluster's progress interval,
#: which is etcd's to set (600 s unless its operator chose otherwise).
WATCH_END_SLACK = 30.0

#: gRPC status codes the gateway puts in error bodies and watch error lines.
_GRPC_DEADLINE_EXCEEDED = 4
_GRPC_PERMISSION_DENIED = 7
_GRPC_OUT_OF_RANGE = 11
_GRPC_UNAUTHENTICATED = 16
#: Error text from etcd is capped in our messages: it names keys at most, but
#: there is no reason to carry more of somebody else's text into logs.
_MAX_DETAIL = 256


@dataclasses.dataclass(frozen=True, slots=True)
class TLSFiles:
    """The TLS files, named as etcdctl names them (``--cacert``, ``--cert``, ``--key``).

    ``insecure_skip_verify`` is etcdctl's ``--insecure-skip-tls-verify``:
    encrypt, but do not check etcd's certificate (a test cluster's
    self-signed one); never for production.
    """

    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure_skip_verify: bool = False

    def __bool__(self) -> bool:
        return bool(self.cacert or self.cert or self.key or self.insecure_skip_verify)


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    """One etcd endpoint: where its gateway is, and the TLS files to reach it with."""

    protocol: str
    host: str
    port: int
    tls: TLSFiles = TLSFiles()

    @property
    def base_url(self) -> str:
        """``http(s)://host:port``, an IPv6 host in brackets (as etcd3gw writes it)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.protocol}://{host}:{self.port}"


def endpoint_client(url: str, tls: TLSFiles = TLSFiles()) -> Endpoint:
    """The :class:`Endpoint` for ``url`` (``http(s)://host:port``), holding the TLS files (no I/O).

    Raises:
        ConfigError: not an http(s) URL with a host, or half a client key pair.
    """
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"--etcd-endpoints {url!r}: give http://HOST:PORT or https://HOST:PORT")
    if parsed.path not in ("", "/") or parsed.query:
        raise ConfigError(f"--etcd-endpoints {url!r}: no path or query (the API path is discovered)")
    if bool(tls.cert) != bool(tls.key):
        raise ConfigError("--cert and --key go together (a client certificate needs its key)")
    try:
        port = parsed.port or 2379
    except ValueError:
        raise ConfigError(f"--etcd-endpoints {url!r}: bad port") from None
    return Endpoint(parsed.scheme, parsed.hostname, port, tls)


def ssl_context(tls: TLSFiles) -> ssl.SSLContext | None:
    """The SSL context httpx should use for ``tls`` (None: httpx's default verification).

    Raises:
        ConfigError: a file is missing or is not what its flag says, named.
    """
    if not tls:
        return None
    for flag, path in (("--cacert", tls.cacert), ("--cert", tls.cert), ("--key", tls.key)):
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"{flag} {path}: no such file")
    try:
        ctx = ssl.create_default_context(cafile=tls.cacert)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"--cacert {tls.cacert}: not a CA bundle ({exc.__class__.__name__})") from exc
    if tls.cert:
        try:
            ctx.load_cert_chain(tls.cert, tls.key)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"--cert {tls.cert} / --key {tls.key}: not a matching certificate and key "
                f"({exc.__class__.__name__})"
            ) from exc
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class EtcdAuth(httpx.Auth):
    """etcd's own authentication (``etcdctl --user``) for the gateway, as an ``httpx`` auth flow.

    The first API request fetches a token from ``/v3/auth/authenticate``;
    every request then carries it as ``Authorization``. A 401 (etcd's
    ``invalid auth token``: a simple token expires after ``--auth-token-ttl``
    idle seconds, a JWT after its TTL) fetches a new token and sends the
    request once more. ``GET /version`` goes without one, as etcd serves it
    to anyone.

    The authenticate call goes over a client of its own, never through the
    transport of the client this auth is attached to: a recorder wrapping
    that transport (``tattler-etcd record``) never sees the password or the
    token, so neither can end up in a cassette.

    Raises (from the request it is attached to):
        AccessDeniedError: wrong name or password.
        TransientReaderError: etcd did not answer the authenticate call.
    """

    def __init__(self, user: str, password: str, *, verify: ssl.SSLContext | bool = True,
                 timeout: float = 30.0) -> None:
        if not user:
            raise ConfigError("--user: give NAME or NAME:PASSWORD")
        self.user = user
        self._password = password
        self._verify = verify
        self._timeout = timeout
        self._token: str | None = None
        self._auth_off = False
        # Many requests start together (a list and one watch per resource): one authenticates,
        # the others wait for its token rather than each asking etcd for one.
        self._lock = trio.Lock()
        #: Tokens fetched so far (the first, then one after each 401).
        self.authentications = 0

    def __repr__(self) -> str:  # never the password or the token
        return f"EtcdAuth(user={self.user!r})"

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        api = _api_prefix(request.url.path)
        if api is None or self._auth_off:
            yield request
            return
        sent = await self._current_token(request.url, api, stale=None)
        if sent is not None:
            request.headers["Authorization"] = sent
        response = yield request
        if response.status_code == 401 and not self._auth_off:
            fresh = await self._current_token(request.url, api, stale=sent)
            if fresh is not None:
                request.headers["Authorization"] = fresh
            yield request

    async def _current_token(self, url: httpx.URL, api: str, *, stale: str | None) -> str | None:
        """The token to send: fetched when there is none yet, or when it is still the one etcd refused."""
        async with self._lock:
            if not self._auth_off and (self._token is None or self._token == stale):
                await self._authenticate(url, api)
            return self._token

    async def _authenticate(self, url: httpx.URL, api: str) -> None:
        target = f"{url.scheme}://{url.netloc.decode('ascii')}{api}auth/authenticate"
        body = _body({"name": self.user, "password": self._password})
        try:
            async with httpx.AsyncClient(verify=self._verify, timeout=self._timeout, trust_env=False) as c:
                resp = await c.post(target, content=body, headers={"content-type": "application/json"})
        except httpx.TransportError as exc:
            raise TransientReaderError(f"etcd {target}: {_transport_text(exc)}") from exc
        self.authentications += 1
        if resp.status_code == 200:
            try:
                token = json.loads(resp.content)["token"]
            except (ValueError, KeyError, TypeError) as exc:
                raise TransientReaderError(f"etcd {target}: a reply without a token") from exc
            self._token = str(token)
            return
        err = _status_error(target, resp.status_code, resp.content)
        if "authentication is not enabled" in str(err):
            # Nothing to prove: go on without a token, but say so once.
            log.warning(
                "etcd %s: --user %s given, but authentication is not enabled there; reading without it",
                target, self.user, extra={"endpoint": target},
            )
            self._auth_off = True
            return
        if "invalid user ID or password" in str(err) or isinstance(err, AccessDeniedError):
            raise AccessDeniedError(f"etcd {target}: --user {self.user}: authentication failed "
                                    f"(wrong name or password)") from None
        raise err


def _api_prefix(path: str) -> str | None:
    """``/v3/`` for ``/v3/kv/range`` (any ``/v3*/`` API path); None for ``/version`` and the like."""
    parts = path.split("/")
    if len(parts) > 2 and parts[1].startswith("v3"):
        return f"/{parts[1]}/"
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class KeyValue:
    """One etcd key-value, decoded from the gateway's base64 and int64-as-string JSON."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int

    @classmethod
    def from_json(cls, kv: Mapping[str, Any]) -> KeyValue:
        return cls(
            _b64decode(kv.get("key", "")),
            _b64decode(kv.get("value", "")),
            int(kv.get("create_revision", 0)),
            int(kv.get("mod_revision", 0)),
        )


class RangePage:
    """One page of a range: its kvs, the store revision it was read at, and whether more follow.

    The kvs are decoded (base64) on first access to :attr:`kvs`, not when the
    reply arrives: a pager needs only :attr:`last_key` to ask for the next
    page, and can do so before this one is decoded.
    """

    __slots__ = ("_kvs", "_raw", "more", "revision")

    def __init__(self, raw_kvs: list[dict[str, Any]], revision: int, more: bool) -> None:
        self._raw = raw_kvs
        self._kvs: list[KeyValue] | None = None
        self.revision = revision
        self.more = more

    def __len__(self) -> int:
        return len(self._raw)

    @property
    def last_key(self) -> bytes | None:
        """The last key of the page (None when empty)."""
        return _b64decode(self._raw[-1].get("key", "")) if self._raw else None

    @property
    def kvs(self) -> list[KeyValue]:
        if self._kvs is None:
            self._kvs = [KeyValue.from_json(kv) for kv in self._raw]
        return self._kvs


@dataclasses.dataclass(frozen=True, slots=True)
class WatchEvent:
    """A PUT or DELETE; ``prev_kv`` when the watch asked for it and etcd still had it."""

    type: str
    kv: KeyValue
    prev_kv: KeyValue | None


@dataclasses.dataclass(frozen=True, slots=True)
class WatchMessage:
    """One line of a watch stream, classified.

    Attributes:
        kind: ``created``, ``events``, ``progress`` (header only: every
            event up to ``revision`` has been sent), ``canceled`` or ``error``.
        revision: the header's store revision (0 when absent).
        events: for ``events``.
        compact_revision: for ``canceled``: nonzero when the start revision
            was compacted.
        grpc_code: for ``error``.
        detail: for ``canceled`` and ``error``: etcd's reason, capped.
    """

    kind: str
    revision: int = 0
    events: tuple[WatchEvent, ...] = ()
    compact_revision: int = 0
    grpc_code: int = 0
    detail: str = ""

    @classmethod
    def parse(cls, line: bytes | str) -> WatchMessage:
        """Classify one line of ``/v3/watch``.

        Raises:
            TransientReaderError: not JSON, or neither a result nor an error.
        """
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise TransientReaderError(f"etcd watch: a line that is not JSON ({len(line)} bytes)") from exc
        if not isinstance(doc, dict):
            raise TransientReaderError("etcd watch: a line that is not a JSON object")
        if "error" in doc:
            err = doc["error"] if isinstance(doc["error"], dict) else {}
            return cls("error", grpc_code=int(err.get("grpc_code", err.get("code", 0)) or 0),
                       detail=str(err.get("message", ""))[:_MAX_DETAIL])
        res = doc.get("result")
        if not isinstance(res, dict):
            raise TransientReaderError("etcd watch: a line with neither result nor error")
        header = res.get("header") or {}
        revision = int(header.get("revision", 0))
        if res.get("canceled"):
            return cls("canceled", revision, compact_revision=int(res.get("compact_revision", 0)),
                       detail=str(res.get("cancel_reason", ""))[:_MAX_DETAIL])
        if res.get("created"):
            return cls("created", revision)
        raw_events = res.get("events")
        if not raw_events:
            return cls("progress", revision)
        events = tuple(
            WatchEvent(
                ev.get("type", "PUT"),
                KeyValue.from_json(ev.get("kv") or {}),
                KeyValue.from_json(ev["prev_kv"]) if ev.get("prev_kv") else None,
            )
            for ev in raw_events
        )
        return cls("events", revision, events)


def _body(doc: Mapping[str, Any]) -> bytes:
    # Sorted and compact: the same request always has the same bytes, so a
    # recording can match requests on their body.
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


class Gateway:
    """The gateway calls the reader needs, on one ``httpx.AsyncClient``.

    ``endpoints`` are tried in turn: a transport error moves to the next one
    for the following request (the reader's retry picks it up).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        endpoints: Sequence[Endpoint],
        *,
        api_path: str | None = None,
        request_timeout: float = 30.0,
        progress_interval: float | None = None,
        watch_idle_timeout: float | None = None,
    ) -> None:
        if not endpoints:
            raise ConfigError("--etcd-endpoints: give at least one endpoint")
        self.client = client
        self.endpoints = list(endpoints)
        self._current = 0
        self.api_path = api_path
        self.request_timeout = request_timeout
        # Every watch asks for progress notifications: etcd sends one to an idle
        # watcher each progress interval (its --experimental-watch-progress-notify-interval),
        # so a watch silent for IDLE_INTERVALS of them is a dead connection (a
        # half-open TCP connection, a proxy that stopped forwarding), not a quiet resource.
        interval = progress_interval if progress_interval is not None else DEFAULT_PROGRESS_INTERVAL
        if not interval > 0:
            raise ConfigError(f"progress interval: must be more than 0 seconds, not {interval!r}")
        self.progress_interval = interval
        #: The newest store revision any reply carried (range headers, watch
        #: messages): etcd's revision as last heard, for the revision-lag metric.
        self.header_revision = 0
        self.watch_idle_timeout = watch_idle_timeout if watch_idle_timeout is not None else IDLE_INTERVALS * interval

    @property
    def base_url(self) -> str:
        return self.endpoints[self._current].base_url

    def _next_endpoint(self) -> None:
        self._current = (self._current + 1) % len(self.endpoints)

    async def discover(self) -> str:
        """The API path (``/v3/``...), asked of the server once unless given."""
        if self.api_path is not None:
            return self.api_path
        url = self.base_url + "/version"
        try:
            resp = await self.client.get(url, timeout=self.request_timeout)
        except httpx.TransportError as exc:
            raise await self._failed(exc, url) from exc
        if resp.status_code != 200:
            raise _status_error(url, resp.status_code, resp.content)
        try:
            version = str(resp.json()["etcdserver"])
            parts = tuple(int(p) for p in version.split(".", 2)[:2])
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentReaderError(f"etcd {url}: not an etcd version reply") from exc
        self.api_path = "/v3/" if parts >= (3, 4) else "/v3beta/" if parts >= (3, 3) else "/v3alpha/"
        return self.api_path

    async def _failed(self, exc: httpx.TransportError, url: str) -> ReaderError:
        """The typed error for a request that got no answer; a transient one moves to the next endpoint.

        TLS mistakes come back permanent, with their cause (see :mod:`tattler_etcd.readers._tls`).
        """
        files = self.endpoints[self._current].tls
        err = await _tls.translate(
            exc, url=url, what=f"etcd {url}", client_cert=bool(files.cert),
            context=ssl_context(files) if files else None,
        )
        if isinstance(err, TransientReaderError):
            self._next_endpoint()
        return err

    def _heard(self, revision: int) -> None:
        self.header_revision = max(self.header_revision, revision)

    def url(self, path: str) -> str:
        assert self.api_path is not None, "call discover() first"
        return self.base_url + self.api_path + path

    async def _post(self, path: str, doc: Mapping[str, Any], on_sent: Callable[[], None] | None = None,
                    on_reply: Callable[[], None] | None = None) -> dict[str, Any]:
        url = self.url(path)
        request = _request(self.client, url, doc, {"content-type": "application/json"}, self.request_timeout,
                           on_sent)
        if on_reply is not None:
            request.extensions["trace"] = _on_body_read(on_reply)
        try:
            resp = await self.client.send(request)
        except httpx.TransportError as exc:
            raise await self._failed(exc, url) from exc
        if resp.status_code != 200:
            raise _status_error(url, resp.status_code, resp.content)
        try:
            # orjson: a page of 500 small Pods (2 MB of base64) in ~1.0 ms, json.loads
            # ~2.6 ms; the pager waits for it before it asks for the next page.
            out = orjson.loads(resp.content)
        except ValueError as exc:  # orjson.JSONDecodeError is one
            raise TransientReaderError(f"etcd {url}: a reply that is not JSON") from exc
        if not isinstance(out, dict):
            raise TransientReaderError(f"etcd {url}: a reply that is not a JSON object")
        return out

    async def range(self, key: bytes, range_end: bytes, *, limit: int, revision: int = 0,
                    on_sent: Callable[[], None] | None = None,
                    on_reply: Callable[[], None] | None = None) -> RangePage:
        """One page of ``[key, range_end)`` at ``revision`` (0: the latest).

        ``on_sent`` is called (maybe more than once: a retried request) when the
        request's body has gone to the connection, while etcd works on it: a
        pager uses it to do its own work in that time (see the reader's list_all).
        ``on_reply`` is called when the reply's body has been read (before it
        is parsed), where the transport tells (httpcore's ``trace`` extension).

        Raises:
            HistoryCompactedError: ``revision`` has been compacted.
            TransientReaderError, PermanentReaderError: see :mod:`tattler_etcd.errors`.
        """
        doc: dict[str, Any] = {"key": _b64(key), "range_end": _b64(range_end), "limit": limit}
        if revision:
            doc["revision"] = revision
        out = await self._post("kv/range", doc, on_sent, on_reply)
        try:
            header_rev = int(out["header"]["revision"])
            kvs = out.get("kvs") or []
            if not isinstance(kvs, list):
                raise TypeError("kvs")
        except (KeyError, TypeError, ValueError) as exc:
            raise TransientReaderError(f"etcd {self.url('kv/range')}: a range reply without a header") from exc
        self._heard(header_rev)
        return RangePage(kvs, header_rev, bool(out.get("more", False)))

    async def current_revision(self) -> int:
        """The store's revision now (a one-key range that returns no kv)."""
        out = await self._post("kv/range", {"key": _b64(b"\0"), "count_only": True})
        try:
            revision = int(out["header"]["revision"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TransientReaderError("etcd: a range reply without a header") from exc
        self._heard(revision)
        return revision

    @asynccontextmanager
    async def watch(
        self, key: bytes, range_end: bytes, start_revision: int, *, timeout: float | None = None,
    ) -> AsyncIterator[WatchStream]:
        """Open a watch of ``[key, range_end)`` from ``start_revision``, with prev_kv and progress.

        Yields a :class:`WatchStream` of :class:`WatchMessage`, one per line.
        It ends when the HTTP body ends.
        ``timeout`` asks the gateway to end the stream after that many seconds
        (``Grpc-Timeout``; the stream then ends with a deadline-exceeded error line).

        Raises:
            TransientReaderError: connection failed or broke, a bad line.
            HistoryCompactedError, PermanentReaderError: from a non-200 reply.
        """
        url = self.url("watch")
        doc = {"create_request": {
            "key": _b64(key), "range_end": _b64(range_end), "start_revision": start_revision,
            "prev_kv": True, "progress_notify": True,
        }}
        headers = {"content-type": "application/json"}
        idle = self.watch_idle_timeout
        if timeout is not None:
            headers["grpc-timeout"] = f"{max(1, int(timeout * 1000))}m"
            idle = min(idle, timeout + min(timeout, WATCH_END_SLACK))
        # No read timeout of httpx's: the stream's own idle limit says what silence means.
        request = _request(self.client, url, doc, headers, httpx.Timeout(self.request_timeout, read=None))
        resp: httpx.Response | None = None
        try:
            # Silence before the headers is as dead as silence after them.
            with trio.move_on_after(idle):
                resp = await self.client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise await self._failed(exc, url) from exc
        if resp is None:
            self._next_endpoint()
            raise TransientReaderError(
                f"etcd watch {url}: no answer for {idle:g} s: a dead connection")
        try:
            lines = resp.aiter_bytes()
            try:
                if resp.status_code != 200:
                    raise _status_error(url, resp.status_code, await resp.aread())
                yield WatchStream(lines, idle_timeout=idle, what=f"etcd watch {url}",
                                  progress_interval=self.progress_interval, on_revision=self._heard)
            finally:
                await abandon(resp, lines)
        except httpx.TransportError as exc:
            self._next_endpoint()
            raise TransientReaderError(f"etcd {url}: {_transport_text(exc)}") from exc


def _request(
    client: httpx.AsyncClient, url: str, doc: Mapping[str, Any], headers: dict[str, str], timeout: Any,
    on_sent: Callable[[], None] | None = None,
) -> httpx.Request:
    """A POST of ``doc`` whose body stream is not an async generator.

    httpx's own body stream is a one-chunk async generator; when a request is
    cut while httpcore sends it (a cancellation, etcd dying), httpcore leaves
    that generator suspended for the garbage collector, which trio reports.
    ``request.content`` stays the bytes, for recorders that read it.
    """
    body = _body(doc)
    request = client.build_request("POST", url, content=body, headers=headers, timeout=timeout)
    request.stream = _OneChunk(body, on_sent)
    return request


def _on_body_read(callback: Callable[[], None]) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
    """An httpcore ``trace`` callback that calls ``callback`` once the response body has been read."""

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event == "http11.receive_response_body.complete":
            callback()

    return trace


class _OneChunk(httpx.AsyncByteStream):
    """A request body of one chunk, iterated by a plain object (nothing to finalize).

    ``on_sent``: called when the transport asks for more after the chunk,
    i.e. once it has written the body (httpcore writes each chunk before it
    asks for the next).
    """

    def __init__(self, data: bytes, on_sent: Callable[[], None] | None = None) -> None:
        self._data = data
        self._on_sent = on_sent

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _Once(self._data, self._on_sent)


class _Once:
    def __init__(self, data: bytes, on_sent: Callable[[], None] | None = None) -> None:
        self._data: bytes | None = data
        self._on_sent = on_sent

    def __aiter__(self) -> _Once:
        return self

    async def __anext__(self) -> bytes:
        if self._data is None:
            on_sent, self._on_sent = self._on_sent, None
            if on_sent is not None:
                on_sent()
            raise StopAsyncIteration
        data, self._data = self._data, None
        return data


class WatchStream:
    """Splits the body into lines and parses each; not an async generator, so nothing is left to finalize.

    Lines are split on newlines, never on HTTP chunks (a catch-up can be one
    multi-megabyte line); :meth:`buffered` says whether a complete line is
    already here, so the reader can hand on together what arrived together.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        idle_timeout: float = math.inf,
        what: str = "etcd watch",
        progress_interval: float | None = None,
        on_revision: Callable[[int], None] | None = None,
    ) -> None:
        self._chunks = chunks
        self._on_revision = on_revision
        self._idle = idle_timeout
        self._what = what
        self._interval = progress_interval
        self._parts: list[bytes] = []
        self._lines: collections.deque[bytes] = collections.deque()
        self._eof = False

    def __aiter__(self) -> WatchStream:
        return self

    def buffered(self) -> bool:
        """True when the next message can be had without waiting for input."""
        return bool(self._lines)

    async def __anext__(self) -> WatchMessage:
        while not self._lines:
            if self._eof:
                raise StopAsyncIteration
            try:
                with trio.move_on_after(self._idle) as idle:
                    chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._eof = True
                self._split(b"\n")  # a last line without its newline
                continue
            if idle.cancelled_caught:
                every = f" (etcd sends progress every {self._interval:g} s)" if self._interval else ""
                raise TransientReaderError(
                    f"{self._what}: nothing received for {self._idle:g} s{every}: a dead connection")
            self._split(chunk)
        msg = WatchMessage.parse(self._lines.popleft())
        if self._on_revision is not None and msg.revision:
            self._on_revision(msg.revision)
        return msg

    def _split(self, chunk: bytes) -> None:
        start = 0
        while True:
            i = chunk.find(b"\n", start)
            if i < 0:
                if start < len(chunk):
                    self._parts.append(chunk[start:])
                return
            self._parts.append(chunk[start:i])
            line = b"".join(self._parts)
            self._parts = []
            if line.strip():
                self._lines.append(line)
            start = i + 1


def _transport_text(exc: httpx.TransportError) -> str:
    text = str(exc)[:_MAX_DETAIL]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _status_error(url: str, status: int, body: bytes) -> Exception:
    """The typed error for a non-200 reply (the gateway's body is a gRPC status as JSON)."""
    code, message = 0, ""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict):
            code = int(doc.get("code", doc.get("grpc_code", 0)) or 0)
            message = str(doc.get("message") or doc.get("error") or "")
    except ValueError:
        pass
    detail = f"HTTP {status}" + (f", grpc code {code}: {message[:_MAX_DETAIL]}" if code or message else "")
    text = f"etcd {url}: {detail}"
    if status == 400 and _tls.PLAIN_HTTP_TO_TLS in body:
        return SchemeMismatchError(f"etcd {url}: the port speaks TLS: use https:// (plain HTTP to a TLS port)")
    if status == 404 and not code:
        return NoSuchPathError(
            f"etcd {url}: HTTP 404: no such path (is this etcd's client URL, with its HTTP gateway, "
            "and is the API path right?)")
    if code == _GRPC_OUT_OF_RANGE and "compacted" in message:
        return HistoryCompactedError(text)
    if "user name is empty" in message:
        return AccessDeniedError(f"{text} (etcd has authentication enabled: give --user NAME)")
    if status in (401, 403) or code in (_GRPC_PERMISSION_DENIED, _GRPC_UNAUTHENTICATED):
        return AccessDeniedError(text)
    if status == 429 or status >= 500 or code in (_GRPC_DEADLINE_EXCEEDED, 14):
        return TransientReaderError(text)
    return PermanentReaderError(text)
