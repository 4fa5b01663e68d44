"""A faithful fake kube-apiserver for tests: real HTTP on 127.0.0.1, no Kubernetes.

No kube-apiserver can run on these machines, so the reader is tested against
this instead. It is test code: the package never imports it.

It copies the behaviour the reader depends on, as the real APIServer has it:

* discovery (``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>/<version>``);
* LIST with ``limit``/``continue`` (the token pins the list's version and
  expires with a 410 once that version is compacted); ``resourceVersion=0``
  is served "from the cache" and ignores ``limit``, as the watch cache does;
  list items in JSON carry no ``apiVersion``/``kind``;
* WATCH from a version (410 as an ERROR event when it was compacted), events
  with ``apiVersion``/``kind``, BOOKMARK events only when asked for
  (``allowWatchBookmarks``), ``timeoutSeconds``;
* streaming WatchList (``sendInitialEvents=true`` with
  ``resourceVersionMatch=NotOlderThan``): the state as ADDED events, then the
  bookmark annotated ``k8s.io/initial-events-end``; a 422 when switched off,
  as with the feature gate off;
* JSON and protobuf (``application/vnd.kubernetes.protobuf``, length-prefixed
  watch frames) for built-in kinds, JSON only for custom resources (406 when
  a client accepts protobuf alone);
* bearer-token authentication (401), per-resource 403, scripted faults (429
  with ``Retry-After``, 500...), and ConfigMap get/create/update for the
  bookmark store.

Everything runs in one trio task tree, so under ``autojump_clock`` the fake's
timeouts are virtual too. :func:`in_process` serves it with no socket at all,
behind an httpx transport (:class:`FakeTransport`): most tests use that. :func:`run_in_thread` runs the same server in its own
thread for code that calls ``trio.run`` itself (the CLI, benchmarks).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import ssl
import threading
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import h11
import httpx
import trio

__all__ = [
    "IN_PROCESS_URL",
    "FakeCluster",
    "FakeResource",
    "FakeTransport",
    "Fault",
    "RunningServer",
    "in_process",
    "open_fake_apiserver",
    "run_in_thread",
]

PROTOBUF = "application/vnd.kubernetes.protobuf"
JSON = "application/json"


@dataclass(frozen=True)
class FakeResource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    builtin: bool = True  # custom resources are served as JSON only

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def base(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


DEFAULT_RESOURCES = (
    FakeResource("", "v1", "pods", "Pod"),
    FakeResource("", "v1", "configmaps", "ConfigMap"),
    FakeResource("", "v1", "nodes", "Node", namespaced=False),
    FakeResource("", "v1", "namespaces", "Namespace", namespaced=False),
    FakeResource("", "v1", "persistentvolumes", "PersistentVolume", namespaced=False),
    FakeResource("apps", "v1", "deployments", "Deployment"),
    FakeResource("example.com", "v1", "widgets", "Widget", builtin=False),
)


@dataclass
class Fault:
    """A scripted failure: the next ``times`` matching requests get ``status``."""

    status: int
    plural: str | None = None  # None: any resource
    watch: bool | None = None  # None: lists and watches
    times: int = 1
    retry_after: int | None = None
    reason: str = ""
    message: str = ""
    in_stream: bool = False  # for watches: 200, then one ERROR event

    def matches(self, plural: str | None, watch: bool) -> bool:
        if self.plural is not None and plural != self.plural:
            return False
        return self.watch is None or self.watch == watch


@dataclass
class _Store:
    res: FakeResource
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)


_REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 406: "NotAcceptable",
    409: "Conflict", 410: "Expired", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
    503: "ServiceUnavailable", 504: "Timeout",
}
_PHRASES = {
    200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    406: "Not Acceptable", 409: "Conflict", 410: "Gone", 422: "Unprocessable Entity",
    429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable", 504: "Gateway Timeout",
}


def status_object(code: int, message: str, reason: str = "") -> dict[str, Any]:
    """A meta/v1 Status, as the APIServer sends for failures."""
    return {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason or _REASONS.get(code, ""), "code": code,
    }


class FakeCluster:
    """The fake's state: objects, history, switches and scripted faults.

    Mutate it from the same trio run as the server (or through
    :meth:`RunningServer.call` when the server runs in a thread).
    """

    def __init__(self, resources: tuple[FakeResource, ...] = DEFAULT_RESOURCES, *, start_rv: int = 1000) -> None:
        self.resources = {r.plural if r.builtin else f"{r.plural}.{r.group}": r for r in resources}
        self._stores = {r: _Store(r) for r in resources}
        self.rv = start_rv
        self.compacted_rv = 0
        #: Serve streaming WatchList (as with the WatchList feature gate on).
        self.watch_list = True
        #: Accept ``sendInitialEvents`` but never send the end bookmark (a
        #: server that ignores the parameter and serves a plain watch).
        self.watch_list_ignored = False
        #: Send bookmarks when asked; False models a server that ignores the flag.
        self.bookmarks = True
        #: The bearer token every request must carry (None: no authentication).
        self.token: str | None = None
        #: Resources (plural) whose list and watch get 403.
        self.forbidden: set[str] = set()
        self.faults: list[Fault] = []
        #: (method, path, query, headers) of every request, for assertions.
        self.requests: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
        self._changed = trio.Event()
        self._bookmark_gen = 0
        self._close_gen = 0
        self._cache: dict[tuple[Any, ...], bytes] = {}
        self._event_cache: dict[tuple[Any, ...], bytes] = {}
        #: How many watch streams are open now.
        self.open_watches = 0
        #: Raw payloads (already framed) the next watch of a resource sends first.
        self.injected: dict[str, list[bytes]] = {}

    # -- state changes ---------------------------------------------------

    def resource(self, plural: str) -> FakeResource:
        for r in self._stores:
            if r.plural == plural:
                return r
        raise KeyError(plural)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _put(self, res: FakeResource, obj: dict[str, Any], event: str) -> dict[str, Any]:
        store = self._stores[res]
        self.rv += 1
        obj = json.loads(json.dumps(obj))
        obj["apiVersion"] = res.api_version
        obj["kind"] = res.kind
        meta = obj.setdefault("metadata", {})
        if not res.namespaced:
            meta.pop("namespace", None)
        elif not meta.get("namespace"):
            meta["namespace"] = "default"
        if not meta.get("uid"):
            digest = hashlib.sha1(f"{res.plural}/{meta.get('namespace')}/{meta['name']}".encode()).hexdigest()
            meta["uid"] = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
        meta["resourceVersion"] = str(self.rv)
        key = (meta.get("namespace") or "", meta["name"])
        if event == "DELETED":
            store.objects.pop(key, None)
        else:
            store.objects[key] = obj
        store.events.append((self.rv, event, obj))
        self._notify()
        return obj

    def create(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self._put(self.resource(plural), obj, "ADDED")

    def update(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self._put(self.resource(plural), obj, "MODIFIED")

    def delete(self, plural: str, name: str, namespace: str = "default") -> dict[str, Any]:
        res = self.resource(plural)
        key = (namespace if res.namespaced else "", name)
        return self._put(res, self._stores[res].objects[key], "DELETED")

    def create_many(self, plural: str, objs: list[dict[str, Any]]) -> None:
        for obj in objs:
            self.create(plural, obj)

    def get(self, plural: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        res = self.resource(plural)
        return self._stores[res].objects.get((namespace if res.namespaced else "", name))

    def compact(self) -> None:
        """Forget history up to now: older versions get 410 from now on."""
        self.compacted_rv = self.rv
        for store in self._stores.values():
            store.events.clear()
        self._cache.clear()

    def send_bookmarks(self) -> None:
        """Every open watch that asked for bookmarks gets one at the current version."""
        self._bookmark_gen += 1
        self._notify()

    def end_watches(self) -> None:
        """End every open watch stream cleanly (as a server timeout does)."""
        self._close_gen += 1
        self._notify()

    def inject(self, plural: str, payload: bytes) -> None:
        """The next watch of ``plural`` sends ``payload`` (framed bytes) before anything else."""
        self.injected.setdefault(plural, []).append(payload)

    def fail(self, status: int, **kw: Any) -> Fault:
        fault = Fault(status, **kw)
        self.faults.append(fault)
        return fault

    def watch_requests(self, plural: str | None = None) -> list[dict[str, str]]:
        return [q for (_m, p, q, _h) in self.requests
                if q.get("watch") in ("1", "true") and (plural is None or p.endswith("/" + plural))]

    def list_requests(self, plural: str | None = None) -> list[dict[str, str]]:
        return [q for (m, p, q, _h) in self.requests
                if m == "GET" and q.get("watch") not in ("1", "true")
                and (plural is None or p.endswith("/" + plural))]

    # -- request handling --------------------------------------------------

    def _encoded_event(self, kind: str, obj: dict[str, Any], protobuf: bool) -> bytes:
        # Objects are never edited in place (every change stores a new dict),
        # so (type, object identity, format) names one encoding for good.
        key = (kind, id(obj), obj["metadata"]["resourceVersion"], protobuf)
        data = self._event_cache.get(key)
        if data is None:
            data = self._event_cache[key] = encode_event(kind, obj, protobuf)
        return data

    def _take_fault(self, plural: str | None, watch: bool) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and fault.matches(plural, watch):
                fault.times -= 1
                return fault
        return None


# ---------------------------------------------------------------------------
# encoding


def _wants_protobuf(accept: str) -> tuple[bool, bool]:
    """(protobuf preferred, JSON acceptable) from an Accept header."""
    types = [t.split(";")[0].strip() for t in accept.split(",") if t.strip()]
    if not types:
        return False, True
    json_ok = any(t in (JSON, "*/*", "application/*") for t in types)
    first = types[0]
    return first == PROTOBUF, json_ok


def _protobuf_codec() -> Any:
    from tattler_etcd import codec  # only imported when a client asks for protobuf

    return codec


def encode_object(obj: dict[str, Any], protobuf: bool) -> bytes:
    if protobuf:
        return bytes(_protobuf_codec().encode(obj))
    return json.dumps(obj, separators=(",", ":")).encode()


def encode_list(res: FakeResource, meta: dict[str, Any], items: list[dict[str, Any]], protobuf: bool) -> bytes:
    if protobuf:
        doc = {"kind": res.kind + "List", "apiVersion": res.api_version, "metadata": meta, "items": items}
        return bytes(_protobuf_codec().encode(doc))
    # As the APIServer writes JSON lists: items without apiVersion/kind.
    parts = [
        json.dumps({k: v for k, v in item.items() if k not in ("apiVersion", "kind")}, separators=(",", ":"))
        for item in items
    ]
    head = json.dumps({"kind": res.kind + "List", "apiVersion": res.api_version, "metadata": meta},
                      separators=(",", ":"))[:-1]
    return (head + ',"items":[' + ",".join(parts) + "]}").encode()


def encode_event(kind: str, obj: dict[str, Any], protobuf: bool) -> bytes:
    if protobuf:
        frame = bytes(_protobuf_codec().encode({"kind": "WatchEvent", "apiVersion": "v1",
                                                "type": kind, "object": obj}))
        # The watch stream carries the bare WatchEvent message, no envelope.
        if frame[:4] == b"k8s\x00":
            frame = _unwrap_watch_event(frame)
        return len(frame).to_bytes(4, "big") + frame
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _unwrap_watch_event(envelope: bytes) -> bytes:
    """The ``raw`` field of a ``runtime.Unknown`` (field 2), without the ``k8s\\0`` magic."""
    data = envelope[4:]
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        wire = key & 7
        if wire == 2:
            size, pos = _varint(data, pos)
            if key >> 3 == 2:
                return data[pos : pos + size]
            pos += size
        elif wire == 0:
            _, pos = _varint(data, pos)
        else:
            raise ValueError("unexpected wire type in an envelope")
    raise ValueError("no raw field in the envelope")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _continue_token(rv: int, after: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps({"rv": rv, "after": list(after)}).encode()).decode()


def _read_continue(token: str) -> tuple[int, tuple[str, str]]:
    doc = json.loads(base64.urlsafe_b64decode(token.encode()))
    return int(doc["rv"]), (doc["after"][0], doc["after"][1])


# ---------------------------------------------------------------------------
# HTTP


class _Response:
    def __init__(self, status: int, body: bytes = b"", content_type: str = JSON,
                 headers: list[tuple[str, str]] | None = None) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or []


def _error(code: int, message: str, reason: str = "", retry_after: int | None = None) -> _Response:
    headers = [("Retry-After", str(retry_after))] if retry_after is not None else []
    return _Response(code, json.dumps(status_object(code, message, reason)).encode(), JSON, headers)


class _WatchBody:
    """A streaming watch response: the content type, and the body as an async iterator of payloads.

    ``async with`` it around the iteration: it counts the open watch and
    closes the generator however the reading ends.
    """

    def __init__(self, cluster: FakeCluster, content_type: str, payloads: AsyncIterator[bytes]) -> None:
        self.cluster = cluster
        self.content_type = content_type
        self._payloads = payloads

    async def __aenter__(self) -> _WatchBody:
        self.cluster.open_watches += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cluster.open_watches -= 1
        await self._payloads.aclose()  # type: ignore[attr-defined]

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._payloads


class _Server:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_request(conn, stream)
                if request is None:
                    return
                await self._dispatch(conn, stream, request, body)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.aclose()

    async def _read_request(self, conn: h11.Connection, stream: trio.abc.Stream) -> tuple[Any, bytes]:
        request = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    async def _send(self, conn: h11.Connection, stream: trio.abc.Stream, event: Any) -> None:
        data = conn.send(event)
        if data:
            await stream.send_all(data)

    async def _respond(self, conn: h11.Connection, stream: trio.abc.Stream, resp: _Response) -> None:
        headers = [("Content-Type", resp.content_type), ("Content-Length", str(len(resp.body))), *resp.headers]
        await self._send(conn, stream, h11.Response(status_code=resp.status, headers=headers,
                                                    reason=_PHRASES.get(resp.status, "").encode()))
        if resp.body:
            await self._send(conn, stream, h11.Data(data=resp.body))
        await self._send(conn, stream, h11.EndOfMessage())

    async def _dispatch(self, conn: h11.Connection, stream: trio.abc.Stream, request: Any, body: bytes) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        resp = self.handle(request.method.decode(), request.target.decode(), headers, body)
        if isinstance(resp, _Response):
            await self._respond(conn, stream, resp)
            return
        await self._send(conn, stream, h11.Response(
            status_code=200, reason=b"OK",
            headers=[("Content-Type", resp.content_type), ("Transfer-Encoding", "chunked")]))
        async with resp:
            async for payload in resp:
                await self._send(conn, stream, h11.Data(data=payload))
        await self._send(conn, stream, h11.EndOfMessage())

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Response | _WatchBody:
        """One request, whatever carries it (h11 on a socket, or :class:`FakeTransport` in-process)."""
        c = self.cluster
        parsed = urllib.parse.urlsplit(target)
        path = parsed.path.rstrip("/") or "/"
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        c.requests.append((method, path, query, headers))
        if c.token is not None and headers.get("authorization", "").lower() != f"bearer {c.token}".lower():
            return _error(401, "Unauthorized")
        result: _Response | _WatchBody = self._route(method, path, query, headers, body)
        return result

    def _route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: bytes) -> Any:
        c = self.cluster
        parts = path.strip("/").split("/")
        if path == "/version":
            return _Response(200, b'{"major":"1","minor":"34","gitVersion":"v1.34.0-fake"}')
        if path == "/api":
            return _Response(200, json.dumps({"kind": "APIVersions", "versions": ["v1"]}).encode())
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for r in c.resources.values():
                if r.group:
                    groups.setdefault(r.group, [])
                    if r.version not in groups[r.group]:
                        groups[r.group].append(r.version)
            doc = {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                 "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
                for g, vs in groups.items()]}
            return _Response(200, json.dumps(doc).encode())
        # discovery of one group/version
        gv = None
        if parts[0] == "api" and len(parts) == 2:
            gv = ("", parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            gv = (parts[1], parts[2])
        if gv is not None:
            found = [r for r in c.resources.values() if (r.group, r.version) == gv]
            if not found:
                return _error(404, "the server could not find the requested resource")
            doc = {"kind": "APIResourceList", "apiVersion": "v1",
                   "groupVersion": f"{gv[0]}/{gv[1]}" if gv[0] else gv[1],
                   "resources": [{"name": r.plural, "singularName": "", "namespaced": r.namespaced,
                                  "kind": r.kind, "verbs": ["get", "list", "watch"]} for r in found]}
            return _Response(200, json.dumps(doc).encode())
        # resource paths
        if parts[0] == "api" and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return _error(404, "the server could not find the requested resource")
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        res = next((r for r in c.resources.values()
                    if (r.group, r.version, r.plural) == (group, version, rest[0])), None)
        if res is None:
            return _error(404, "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        if name is not None or method != "GET":
            return self._crud(method, res, namespace, name, body)
        watch = query.get("watch") in ("1", "true")
        if res.plural in c.forbidden:
            verb = "watch" if watch else "list"
            return _error(403, f'{res.plural} is forbidden: User "system:serviceaccount:default:tattler" '
                               f'cannot {verb} resource "{res.plural}" in API group "{res.group}" '
                               "at the cluster scope")
        fault = c._take_fault(res.plural, watch)
        if fault is not None and not (watch and fault.in_stream):
            return _error(fault.status, fault.message or _PHRASES.get(fault.status, "failure"),
                          fault.reason, fault.retry_after)
        protobuf, json_ok = _wants_protobuf(headers.get("accept", ""))
        if protobuf and not res.builtin:
            if not json_ok:
                return _error(406, f"only the following media types are accepted: {JSON}")
            protobuf = False
        if watch:
            return self._watch(res, namespace, query, protobuf, fault)
        return self._list(res, namespace, query, protobuf)

    def _crud(self, method: str, res: FakeResource, namespace: str | None, name: str | None,
              body: bytes) -> _Response:
        c = self.cluster
        store = c._stores[res]
        if method == "GET" and name is not None:
            obj = store.objects.get((namespace or "", name))
            if obj is None:
                return _error(404, f'{res.plural} "{name}" not found')
            return _Response(200, json.dumps(obj).encode())
        try:
            doc = json.loads(body)
        except ValueError:
            return _error(400, "the body is not JSON")
        meta = doc.setdefault("metadata", {})
        if namespace:
            meta["namespace"] = namespace
        key = (namespace or "", meta.get("name", ""))
        if method == "POST":
            if key in store.objects:
                return _error(409, f'{res.plural} "{key[1]}" already exists', "AlreadyExists")
            return _Response(201, json.dumps(c._put(res, doc, "ADDED")).encode())
        if method == "PUT":
            current = store.objects.get(key)
            if current is None:
                return _error(404, f'{res.plural} "{key[1]}" not found')
            want = meta.get("resourceVersion")
            if want and want != current["metadata"]["resourceVersion"]:
                return _error(409, f'Operation cannot be fulfilled on {res.plural} "{key[1]}": '
                                   "the object has been modified", "Conflict")
            meta["uid"] = current["metadata"]["uid"]
            return _Response(200, json.dumps(c._put(res, doc, "MODIFIED")).encode())
        return _error(405, "method not allowed")

    def _selected(self, res: FakeResource, namespace: str | None) -> list[dict[str, Any]]:
        objs = self.cluster._stores[res].objects
        keys = sorted(k for k in objs if namespace is None or k[0] == namespace)
        return [objs[k] for k in keys]

    def _list(self, res: FakeResource, namespace: str | None, query: dict[str, str],
              protobuf: bool) -> _Response:
        c = self.cluster
        ctype = PROTOBUF if protobuf else JSON
        rv = query.get("resourceVersion", "")
        limit = int(query.get("limit") or 0)
        token = query.get("continue")
        if rv == "0":
            limit = 0  # served from the watch cache, which does not page
        after: tuple[str, str] | None = None
        list_rv = c.rv
        if token:
            try:
                list_rv, after = _read_continue(token)
            except (ValueError, KeyError):
                return _error(400, "continue key is not valid")
            if list_rv < c.compacted_rv:
                return _error(410, "The provided continue parameter is too old to display a consistent "
                                   "list result. You can start a new list without the continue parameter.",
                              "Expired")
        cache_key = (res, namespace, rv == "0", limit, token, c.rv, protobuf)
        body = c._cache.get(cache_key)
        if body is not None:
            return _Response(200, body, ctype)
        objs = self._selected(res, namespace)
        if after is not None:
            objs = [o for o in objs
                    if ((o["metadata"].get("namespace") or ""), o["metadata"]["name"]) > after]
        meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
        if limit and len(objs) > limit:
            last = objs[limit - 1]["metadata"]
            meta["continue"] = _continue_token(list_rv, (last.get("namespace") or "", last["name"]))
            meta["remainingItemCount"] = len(objs) - limit
            objs = objs[:limit]
        body = encode_list(res, meta, objs, protobuf)
        c._cache[cache_key] = body
        return _Response(200, body, ctype)

    def _watch(self, res: FakeResource, namespace: str | None, query: dict[str, str], protobuf: bool,
               fault: Fault | None) -> Any:
        c = self.cluster
        rv_param = query.get("resourceVersion", "")
        initial = query.get("sendInitialEvents") == "true"
        bookmarks = query.get("allowWatchBookmarks") == "true" and c.bookmarks
        if initial and c.watch_list_ignored:
            initial = False
        elif initial:
            if not c.watch_list:
                return _error(422, "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: "
                                   "sendInitialEvents is forbidden for watch unless the WatchList feature "
                                   "gate is enabled", "Invalid")
            if query.get("resourceVersionMatch") != "NotOlderThan" or not bookmarks:
                return _error(422, "sendInitialEvents requires resourceVersionMatch=NotOlderThan and "
                                   "allowWatchBookmarks=true", "Invalid")
        elif query.get("resourceVersionMatch"):
            return _error(422, "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch",
                          "Invalid")
        timeout = float(query.get("timeoutSeconds") or 1800)
        ctype = PROTOBUF + ";stream=watch" if protobuf else JSON
        return _WatchBody(c, ctype, self._stream(res, namespace, rv_param, initial, bookmarks, protobuf, fault,
                                                 trio.current_time() + timeout))

    async def _stream(self, res: FakeResource, namespace: str | None, rv_param: str, initial: bool,
                      bookmarks: bool, protobuf: bool, fault: Fault | None,
                      deadline: float) -> AsyncIterator[bytes]:
        """The watch body, payload by payload, until ``deadline`` (``timeoutSeconds``) or the end."""
        c = self.cluster
        store = c._stores[res]
        if fault is not None:
            yield encode_event("ERROR", status_object(fault.status, fault.message or "failure", fault.reason),
                               protobuf)
            return
        bookmark_gen = c._bookmark_gen
        close_gen = c._close_gen
        for payload in c.injected.pop(res.plural, []):
            yield payload

        def selected(obj: dict[str, Any]) -> bool:
            return namespace is None or obj["metadata"].get("namespace") == namespace

        def bookmark(rv: int, end: bool = False) -> bytes:
            meta: dict[str, Any] = {"resourceVersion": str(rv), "creationTimestamp": None}
            if end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return encode_event("BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version,
                                             "metadata": meta}, protobuf)

        if initial or rv_param in ("", "0"):
            # The current state as synthetic ADDED events, then the changes after it.
            since = c.rv
            objs = self._selected(res, namespace)
            batch = [c._encoded_event("ADDED", o, protobuf) for o in objs]
            for i in range(0, len(batch), 100):
                yield b"".join(batch[i : i + 100])
            if initial:
                yield bookmark(since, end=True)
        else:
            since = int(rv_param)
            if since < c.compacted_rv:
                yield encode_event("ERROR", status_object(
                    410, f"too old resource version: {since} ({c.compacted_rv})", "Expired"), protobuf)
                return
        while True:
            changed = c._changed
            pending = [(rv, kind, obj) for (rv, kind, obj) in store.events if rv > since and selected(obj)]
            if pending:
                yield b"".join(c._encoded_event(kind, obj, protobuf) for (_rv, kind, obj) in pending)
                since = pending[-1][0]
            if c._close_gen != close_gen:
                return
            if c._bookmark_gen != bookmark_gen:
                bookmark_gen = c._bookmark_gen
                if bookmarks:
                    yield bookmark(c.rv)
                    since = max(since, c.rv)
            with trio.move_on_at(deadline):
                await changed.wait()
            if trio.current_time() >= deadline:
                return


class _TransportBody(httpx.AsyncByteStream):
    """A watch body as httpx reads it; a plain iterator (no generator left for the GC to finalize)."""

    def __init__(self, body: _WatchBody) -> None:
        self._body = body
        self._open = False
        self._closed = False

    def __aiter__(self) -> _TransportBody:  # type: ignore[override]
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        if not self._open:
            await self._body.__aenter__()
            self._open = True
        try:
            return await self._body._payloads.__anext__()
        except StopAsyncIteration:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._open:
            await self._body.__aexit__()
        else:
            await self._body._payloads.aclose()  # type: ignore[attr-defined]


class FakeTransport(httpx.AsyncBaseTransport):
    """The fake APIServer in-process, behind httpx's one-method transport seam.

    No socket and no thread: a test's reader and the fake share one trio run,
    so the autojump clock covers both and nothing waits on the network.
    HTTP framing and TLS are what this leaves out; a few tests keep
    :func:`open_fake_apiserver` for those.
    """

    def __init__(self, cluster: FakeCluster,
                 before: Callable[[httpx.Request], Awaitable[None]] | None = None) -> None:
        self.server = _Server(cluster)
        #: Awaited before each request is handled (to hold watches back, say).
        self.before = before

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        await trio.lowlevel.checkpoint()
        if self.before is not None:
            await self.before(request)
        target = request.url.raw_path.decode()
        headers = {k.decode().lower(): v.decode() for k, v in request.headers.raw}
        resp = self.server.handle(request.method, target, headers, body)
        if isinstance(resp, _Response):
            return httpx.Response(resp.status, headers=[("Content-Type", resp.content_type), *resp.headers],
                                  content=resp.body, request=request)
        return httpx.Response(200, headers=[("Content-Type", resp.content_type)], stream=_TransportBody(resp),
                              request=request)


#: The base URL of an in-process fake (never resolved: the transport answers).
IN_PROCESS_URL = "http://fake-apiserver.invalid"


@dataclass
class RunningServer:
    """A fake APIServer listening on 127.0.0.1."""

    cluster: FakeCluster
    url: str
    _token: trio.lowlevel.TrioToken | None = None

    def client(self, before: Callable[[httpx.Request], Awaitable[None]] | None = None) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` for this server: in-process when it has no socket, else over 127.0.0.1."""
        if self.url == IN_PROCESS_URL:
            return httpx.AsyncClient(base_url=self.url, transport=FakeTransport(self.cluster, before))
        return httpx.AsyncClient(base_url=self.url)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the server's trio thread (thread mode), or directly."""
        if self._token is None:
            return fn(*args)
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)


async def _serve_listeners(cluster: FakeCluster, ssl_context: ssl.SSLContext | None,
                           task_status: trio.TaskStatus[str]) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    server = _Server(cluster)
    scheme = "http"
    serve_listeners: list[Any] = list(listeners)
    if ssl_context is not None:
        serve_listeners = [trio.SSLListener(lst, ssl_context, https_compatible=True) for lst in listeners]
        scheme = "https"
    await trio.serve_listeners(server.handle_connection, serve_listeners,
                               task_status=_Relay(task_status, f"{scheme}://127.0.0.1:{port}"))


class _Relay:
    """Passes our URL to ``task_status`` when serve_listeners reports it is up."""

    def __init__(self, task_status: trio.TaskStatus[str], url: str) -> None:
        self._status = task_status
        self._url = url

    def started(self, value: Any = None) -> None:
        self._status.started(self._url)


@contextlib.asynccontextmanager
async def open_fake_apiserver(cluster: FakeCluster | None = None, *,
                              ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[RunningServer]:
    """Serve ``cluster`` on 127.0.0.1 (a free port) for the duration of the block."""
    cluster = cluster or FakeCluster()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(_serve_listeners, cluster, ssl_context)
        try:
            yield RunningServer(cluster, url)
        finally:
            nursery.cancel_scope.cancel()


def in_process(cluster: FakeCluster | None = None) -> RunningServer:
    """The fake with no socket: readers reach it through :meth:`RunningServer.client` (a FakeTransport)."""
    return RunningServer(cluster or FakeCluster(), IN_PROCESS_URL)


@contextlib.contextmanager
def run_in_thread(cluster_factory: Callable[[], FakeCluster] = FakeCluster, *,
                  ssl_context: ssl.SSLContext | None = None) -> Iterator[RunningServer]:
    """The same server in its own thread and trio run (for code that calls ``trio.run`` itself)."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        cluster = cluster_factory()
        box["stop"] = trio.Event()
        async with open_fake_apiserver(cluster, ssl_context=ssl_context) as server:
            box["server"] = RunningServer(cluster, server.url, trio.lowlevel.current_trio_token())
            ready.set()
            await box["stop"].wait()

    thread = threading.Thread(target=lambda: trio.run(main), name="fake-apiserver", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the fake APIServer did not start")
    server: RunningServer = box["server"]
    try:
        yield server
    finally:
        server.call(box["stop"].set)
        thread.join(30)
