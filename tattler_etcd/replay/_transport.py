"""Record a live reader's HTTP exchanges, open watch streams included.

vcrpy records by reading a whole response body before handing it on, so it
hangs forever on a watch: the body of a watch never ends. This transport sits
between the reader's ``httpx.AsyncClient`` and the real transport instead and
*tees* each body line by line as the reader consumes it. A unary reply (a
range page, a list) is read whole, scrubbed, and handed on; a watch reply is
scrubbed and passed on one line at a time. When the recorder's limit is
reached (``max_events``, a duration, or :meth:`Recorder.stop`), every open
stream is cut after the last whole line the reader received, so each body in
the file ends cleanly, exactly where the reader's view of it ended; the
reader then sees its streams end.

The reader reads what the file will hold (scrubbed bodies), so a recording
run and its replay see the same bytes.

The recorder also notes *when* things arrived, in seconds from the first
request: each response, and each line (or frame) of a watch body as the
reader received it, and the body's end. A replay paces the bodies on a
virtual clock from these offsets, so batch windows split a replay where they
split the recorded run.
"""

from __future__ import annotations

import itertools
import json
import logging
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import trio
import trio.testing

from tattler_etcd import codec
from tattler_etcd.errors import ConfigError, RecordingError, TattlerError
from tattler_etcd.replay._format import Timing
from tattler_etcd.replay._redact import (
    WITHHELD,
    CredentialScrubber,
    ObjectScrubber,
    ValueScrubber,
    scrub_apiserver_line,
    scrub_json_body,
    scrub_watch_frame,
)

__all__ = ["FILTERED_HEADERS", "Gate", "Recorder", "RecordingTransport", "is_watch_request"]

#: Headers never written to a file: credentials, and headers that would be
#: wrong once a body is scrubbed or that change on every run.
FILTERED_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
    "content-length", "content-encoding", "transfer-encoding", "date",
})


logger = logging.getLogger("tattler_etcd.replay")

#: Chunks already buffered that a cut stream may still hand over while it is let go.
_MAX_DRAIN_CHUNKS = 1000


def is_watch_request(request: httpx.Request) -> bool:
    """True for a streaming request: etcd's ``/v3/watch`` or an APIServer ``?watch=true``."""
    if request.url.path.rstrip("/").endswith("/watch"):
        return True
    return request.url.params.get("watch", "").lower() in ("1", "true")


class Recorder:
    """Collects scrubbed interactions from one or more :class:`RecordingTransport` s.

    Args:
        scrub_value: scrubs one etcd value (bytes as stored) named by its key.
        scrub_object: scrubs one JSON-shaped object (APIServer replies).
        max_events: stop once this many watch events went through (a line
            boundary, so the count may go past it within one watch message).

    Stopping cuts the watches, not the lists: unary requests (a list's next
    page, a relist) still go through and are recorded, so a replay never
    stops halfway through a list; a watch asked for after the stop is never
    sent: it is recorded as a watch that ends at once, and the live reader
    waits for it until cancelled, so it never sees an answer the file does
    not hold. :meth:`settled` says when the reader has nothing left to ask
    but watches.
    """

    def __init__(
        self,
        *,
        scrub_value: ValueScrubber,
        scrub_object: ObjectScrubber,
        max_events: int | None = None,
    ) -> None:
        if max_events is not None and max_events < 1:
            raise ConfigError(f"max_events must be at least 1, not {max_events!r}")
        self.scrub_value = scrub_value
        self.scrub_object = scrub_object
        #: Every credential seen in the run, removed from everything stored.
        self.credentials = CredentialScrubber()
        self.max_events = max_events
        self.watch_events = 0
        self.stopped = trio.Event()
        self.stopped_by = ""
        self._seq = itertools.count()
        self._done: list[tuple[int, dict[str, Any], dict[str, Any], Timing]] = []
        self._t0: float | None = None
        self._open: dict[int, _Tee] = {}
        self._gates: list[Gate] = []
        self._initial_states = 0
        self._initial_changed = trio.Event()
        self._unary_in_flight = 0
        self._unsent: set[tuple[str, str, str]] = set()
        self._unary_done = trio.Event()

    # --- what the caller sees -----------------------------------------------------

    def transport(self, inner: httpx.AsyncBaseTransport | None = None) -> RecordingTransport:
        """A transport recording into this recorder, forwarding to ``inner`` (default: a plain one)."""
        return RecordingTransport(self, inner or httpx.AsyncHTTPTransport())

    @property
    def interactions(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """The finished interactions in the order their requests were sent (vcrpy dicts)."""
        return [(req, resp) for _, req, resp, _t in sorted(self._done, key=lambda t: t[0])]

    @property
    def timings(self) -> list[Timing]:
        """When each finished interaction's answer arrived (as :attr:`interactions` orders them)."""
        return [t for _, _req, _resp, t in sorted(self._done, key=lambda t: t[0])]

    def offset(self) -> float:
        """Seconds since the recording started (its first request); 0 before it."""
        now = trio.current_time()
        if self._t0 is None:
            self._t0 = now
        return now - self._t0

    def stop(self, reason: str = "stop") -> None:
        """Stop recording: cut every open watch after its last whole line; later watches are never sent."""
        if self.stopped.is_set():
            return
        self.stopped_by = reason
        for tee in list(self._open.values()):
            tee.finish()
        self.stopped.set()

    async def settled(self, cushion: float = 0.05) -> None:
        """After :meth:`stop`: wait until no unary request is in flight and every task is blocked.

        Then the reader waits on a cut watch's reconnect (held here) or a
        back-off, and cancelling it loses nothing the file should hold.
        """
        await self.stopped.wait()
        while True:
            while self._unary_in_flight:
                await self._unary_done.wait()
            await trio.testing.wait_all_tasks_blocked(cushion)
            if not self._unary_in_flight:
                return

    async def stop_after(self, seconds: float) -> None:
        """Sleep ``seconds``, then :meth:`stop` with reason ``"duration"`` (run it in a nursery)."""
        await trio.sleep(seconds)
        self.stop("duration")

    def hold(self, predicate: Callable[[httpx.Request], bool]) -> Gate:
        """Make requests matching ``predicate`` wait until the returned gate is released.

        Lets a scenario change the data at an exact point of a reader's run
        (between its list and its watch, say) without racing it.
        """
        gate = Gate(predicate)
        self._gates.append(gate)
        return gate

    async def wait_initial_states(self, n: int) -> None:
        """Wait until ``n`` WatchList streams have delivered their initial state (their end bookmark)."""
        while self._initial_states < n:
            await self._initial_changed.wait()

    # --- used by the transport ------------------------------------------------------

    def _initial_state_ended(self) -> None:
        self._initial_states += 1
        self._initial_changed.set()
        self._initial_changed = trio.Event()

    async def _gate(self, request: httpx.Request) -> None:
        self._gates = [g for g in self._gates if not g.released.is_set()]
        for gate in list(self._gates):
            if gate.predicate(request):
                await gate._wait()

    async def _unsent_watch(self, request: httpx.Request, vcr_request: dict[str, Any], seq: int) -> None:
        """A watch asked for after the stop: recorded as one that ends at once, never sent, never answered.

        In a replay the reader does not reconnect, so the only watches it asks
        for are the ones that follow a list; one that followed a list still in
        progress at the stop must be in the file, or the replay would fail
        there. It ends at once (an empty body). A reconnect recorded this way
        is never asked for on replay, which is harmless. The live reader gets
        no answer: it waits until the recording run is cancelled.
        """
        key = (vcr_request["method"], vcr_request["uri"], vcr_request["body"])
        if key not in self._unsent:
            self._unsent.add(key)
            accept = request.headers.get("accept", "")
            ctype = accept if accept and "," not in accept and "*" not in accept else "application/json"
            at = self.offset()
            self._add(seq, vcr_request, {"status": {"code": 200, "message": "OK"},
                                         "headers": {"content-type": [ctype]}, "body": {"string": ""}},
                      Timing(at=at, end=at))
        await trio.sleep_forever()

    def _add(self, seq: int, request: dict[str, Any], response: dict[str, Any], timing: Timing) -> None:
        # The one door into the file: no credential passes it (userinfo, tokens, passwords, echoes).
        cred = self.credentials
        auth = "/auth" in str(request.get("uri", "")).partition("?")[0]
        self._done.append((seq, cred.request(request), cred.response(response, auth=auth), timing))

    def _count_events(self, n: int) -> None:
        self.watch_events += n
        if self.max_events is not None and self.watch_events >= self.max_events:
            self.stop("events")


class Gate:
    """Holds matching requests until :meth:`release` (see :meth:`Recorder.hold`)."""

    def __init__(self, predicate: Callable[[httpx.Request], bool]) -> None:
        self.predicate = predicate
        self.released = trio.Event()
        #: How many requests wait here now.
        self.held = 0
        self._changed = trio.Event()

    async def wait_held(self, n: int) -> None:
        """Wait until ``n`` requests wait at this gate."""
        while self.held < n:
            await self._changed.wait()

    def release(self) -> None:
        """Let the held requests (and later matching ones) through."""
        self.released.set()

    async def _wait(self) -> None:
        self.held += 1
        self._changed.set()
        self._changed = trio.Event()
        try:
            await self.released.wait()
        finally:
            self.held -= 1


class RecordingTransport(httpx.AsyncBaseTransport):
    """Forwards to a real transport and records scrubbed copies of every exchange."""

    def __init__(self, recorder: Recorder, inner: httpx.AsyncBaseTransport) -> None:
        self.recorder = recorder
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        rec = self.recorder
        await request.aread()  # so a gate's predicate can look at the body
        await rec._gate(request)
        if is_watch_request(request):
            return await self._handle(request)
        rec._unary_in_flight += 1
        try:
            return await self._handle(request)
        finally:
            rec._unary_in_flight -= 1
            if not rec._unary_in_flight:
                rec._unary_done.set()
                rec._unary_done = trio.Event()

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        rec = self.recorder
        body = await request.aread()
        rec.credentials.learn_request(request.url, request.headers, body)
        rec.offset()  # the first request starts the recording's clock
        seq = next(rec._seq)
        vcr_request = {
            "method": request.method,
            "uri": str(request.url),
            # As vcrpy records it (an empty body is "", not null), so its body matcher agrees.
            "body": body.decode("utf-8"),
            "headers": {k: [v] for k, v in request.headers.items() if k.lower() not in FILTERED_HEADERS},
        }
        if rec.stopped.is_set() and is_watch_request(request):
            await rec._unsent_watch(request, vcr_request, seq)
        response = await self.inner.handle_async_request(request)
        try:
            decoder = _decoder(response, request)
            kind = _body_kind(response, request)
        except RecordingError:
            await _close(response)
            raise
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in FILTERED_HEADERS]
        phrase = response.extensions.get("reason_phrase")
        status = {"code": response.status_code, "message": phrase.decode("ascii", "replace")
                  if isinstance(phrase, bytes) else ""}
        recorded_headers: dict[str, list[str]] = {}
        for k, v in headers:
            recorded_headers.setdefault(k, []).append(v)
        if is_watch_request(request) and response.status_code == 200:
            initial = request.url.params.get("sendInitialEvents", "").lower() == "true"
            tee = _Tee(rec, seq, vcr_request, status, recorded_headers, response, decoder, kind, initial)
            tee.at = rec.offset()
            rec._open[seq] = tee
            return httpx.Response(response.status_code, headers=headers, stream=tee,
                                  extensions={k: v for k, v in response.extensions.items() if k != "network_stream"})
        try:
            raw = b"".join([decoder(chunk) async for chunk in _stream(response)]) + decoder(b"", True)
        finally:
            await _close(response)
        if "/auth" in request.url.path:
            rec.credentials.learn_response(raw)  # etcd's authenticate hands out a token
        # A protobuf error reply is a Status (a message, never an object): kept as it is.
        clean = raw if kind == _PROTOBUF and response.status_code >= 300 else _scrub_body(raw, kind, rec)
        rec._add(seq, vcr_request, {"status": status, "headers": recorded_headers, "body": {"string": _text(clean)}},
                 Timing(at=rec.offset()))
        return httpx.Response(response.status_code, headers=headers, content=clean,
                              extensions={k: v for k, v in response.extensions.items() if k != "network_stream"})

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Tee(httpx.AsyncByteStream):
    """A watch body: scrubbed line by line as the reader pulls it, cut on stop."""

    def __init__(
        self,
        rec: Recorder,
        seq: int,
        request: dict[str, Any],
        status: dict[str, Any],
        headers: dict[str, list[str]],
        response: httpx.Response,
        decoder: Callable[..., bytes],
        kind: str,
        initial: bool = False,
    ) -> None:
        self.rec = rec
        self.seq = seq
        self.request = request
        self.status = status
        self.headers = headers
        self.response = response
        self.decoder = decoder
        self.kind = kind
        self.lines: list[bytes] = []
        #: When the headers arrived, and (offset, size) of each line as the reader received it.
        self.at = 0.0
        self.times: list[tuple[float, int]] = []
        #: Inside a WatchList's initial state (``sendInitialEvents=true``), until its end bookmark.
        self.initial = initial
        self.pending = b""
        self.source: AsyncIterator[bytes] | None = None
        self.finished = False
        #: Cancelled by :meth:`finish`, so a reader waiting on a quiet stream sees it end.
        self.waiting: trio.CancelScope | None = None

    def finish(self) -> None:
        """Write what the reader has seen as this interaction's body (once)."""
        if self.finished:
            return
        self.finished = True
        if self.waiting is not None:
            self.waiting.cancel()
        self.rec._open.pop(self.seq, None)
        body = b"".join(self.lines)
        end = max(self.rec.offset(), self.at)
        self.rec._add(self.seq, self.request,
                      {"status": self.status, "headers": self.headers, "body": {"string": _text(body)}},
                      Timing(at=self.at, lines=tuple(self.times), end=end))

    def __aiter__(self) -> AsyncIterator[bytes]:
        # An explicit iterator, not an async generator: a generator left
        # suspended when the reader lets go would be finalized by the GC, late.
        return self

    async def __anext__(self) -> bytes:
        while not self.finished:
            unit = self._next_unit()
            if unit is not None:
                clean, events, ends_initial = unit
                self.lines.append(clean)
                self.times.append((self.rec.offset(), len(clean)))
                if self.initial:
                    # A WatchList's initial state comes as ADDED events: not watch events yet.
                    self.initial = not ends_initial
                    if not self.initial:
                        self.rec._initial_state_ended()
                else:
                    self.rec._count_events(events)
                return clean
            if self.source is None:
                self.source = _stream(self.response)
            chunk = None
            self.waiting = trio.CancelScope()
            with self.waiting:
                try:
                    chunk = await self.source.__anext__()
                except StopAsyncIteration:
                    break
            if chunk is None:  # the recorder stopped while we waited
                break
            self.pending += self.decoder(chunk)
        # The server ended the stream, or the recorder stopped: the body so far is the body.
        self.finish()
        await self._close_source()
        raise StopAsyncIteration

    async def _close_source(self) -> None:
        """Let go of the real body, leaving no async generator suspended for the GC.

        httpx/httpcore bodies are chains of async generators; closing only the
        outer one leaves the inner ones suspended, and trio warns when the GC
        finds them. So pull once more inside an already-cancelled scope: the
        first checkpoint inside the chain raises Cancelled, and every generator
        in it ends; then close the connection.
        """
        source, self.source = self.source, None
        if source is None:
            return
        with trio.CancelScope() as scope:
            scope.cancel()  # the next read inside the chain raises Cancelled through all of it
            try:
                for _ in range(_MAX_DRAIN_CHUNKS):
                    await source.__anext__()
            except Exception as exc:  # noqa: BLE001 - StopAsyncIteration, or the read error we provoked
                logger.debug("let go of a cut stream: %s", type(exc).__name__)
        await _close(self.response)
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()

    def _next_unit(self) -> tuple[bytes, int, bool] | None:
        """The next whole unit of the body, scrubbed: (bytes, watch events in it, ends a WatchList's state).

        Units are lines (JSON streams) or length-prefixed frames (protobuf
        watches); None when ``pending`` holds no whole unit yet.
        """
        if self.kind == _PROTOBUF:
            if len(self.pending) < 4:
                return None
            size = int.from_bytes(self.pending[:4], "big")
            if len(self.pending) < 4 + size:
                return None
            frame, self.pending = self.pending[4:4 + size], self.pending[4 + size:]
            clean, type_, obj = scrub_watch_frame(frame, self.rec.scrub_value)
            events = 1 if type_ in _CHANGES else 0
            ends = type_ == "BOOKMARK" and _protobuf_ends_initial_events(obj)
            return len(clean).to_bytes(4, "big") + clean, events, ends
        nl = self.pending.find(b"\n")
        if nl < 0:
            return None
        line, self.pending = self.pending[:nl + 1], self.pending[nl + 1:]
        stripped = line.rstrip(b"\r\n")
        if not stripped.strip():
            return line, 0, False
        clean = _scrub_body(stripped, self.kind, self.rec) + b"\n"
        return clean, _events_in(clean, self.kind), _ends_initial_events(clean)

    async def aclose(self) -> None:
        self.finish()
        await self._close_source()
        await _close(self.response)


def _stream(response: httpx.Response) -> AsyncIterator[bytes]:
    # The transport-level stream (as vcrpy reads it): the Response is not the client's yet.
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    return stream.__aiter__()


async def _close(response: httpx.Response) -> None:
    stream = response.stream
    if isinstance(stream, httpx.AsyncByteStream):
        await stream.aclose()


_ETCD, _JSON, _PROTOBUF = "etcd", "apiserver", "apiserver-protobuf"
_CHANGES = ("ADDED", "MODIFIED", "DELETED")


def _body_kind(response: httpx.Response, request: httpx.Request) -> str:
    if request.url.path.startswith(("/v3/", "/v3beta/", "/v3alpha/")):
        return _ETCD
    ctype = response.headers.get("content-type", "").lower()
    if "protobuf" in ctype:
        return _PROTOBUF
    if ctype and "json" not in ctype and response.status_code < 300:
        raise RecordingError(f"{request.url.path}: cannot record a {ctype!r} reply (the recorder scrubs JSON "
                             "and Kubernetes protobuf)")
    return _JSON


def _scrub_body(body: bytes, kind: str, rec: Recorder) -> bytes:
    if kind == _ETCD:
        return scrub_json_body(body, rec.scrub_value)
    if kind == _PROTOBUF:
        try:
            return rec.scrub_value(body, "") if body else body
        except TattlerError:
            return WITHHELD
    return scrub_apiserver_line(body, rec.scrub_object)


def _protobuf_ends_initial_events(obj: bytes) -> bool:
    if b"initial-events-end" not in obj:
        return False
    try:
        annotations = codec.decode(obj).get("metadata", {}).get("annotations") or {}
    except (TattlerError, AttributeError):
        return False
    return bool(annotations.get("k8s.io/initial-events-end") == "true")


def _events_in(line: bytes, kind: str) -> int:
    try:
        doc = json.loads(line)
    except ValueError:
        return 0
    if not isinstance(doc, dict):
        return 0
    if kind == "etcd":
        result = doc.get("result")
        events = result.get("events") if isinstance(result, dict) else None
        return len(events) if isinstance(events, list) else 0
    return 1 if doc.get("type") in ("ADDED", "MODIFIED", "DELETED") else 0


def _ends_initial_events(line: bytes) -> bool:
    """The bookmark that ends a WatchList's initial state (annotated ``k8s.io/initial-events-end``)."""
    if b"initial-events-end" not in line:
        return False
    try:
        doc = json.loads(line)
        annotations = doc["object"]["metadata"].get("annotations") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return bool(doc.get("type") == "BOOKMARK" and annotations.get("k8s.io/initial-events-end") == "true")


def _decoder(response: httpx.Response, request: httpx.Request) -> Callable[..., bytes]:
    """Undo gzip/deflate ourselves: scrubbing needs the plain bytes, and the file stores them plain."""
    encoding = response.headers.get("content-encoding", "identity").lower().strip()
    if encoding in ("", "identity"):
        return lambda chunk, final=False: chunk
    if encoding not in ("gzip", "deflate"):
        raise RecordingError(f"{request.url.path}: cannot record a {encoding!r}-encoded reply")
    d = zlib.decompressobj(47 if encoding == "gzip" else 15)

    def decode(chunk: bytes, final: bool = False) -> bytes:
        return d.flush() if final else d.decompress(chunk)

    return decode


def _text(body: bytes) -> str | bytes:
    """What vcrpy stores: text when the body is UTF-8 (readable YAML), else the bytes (YAML ``!!binary``)."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body
