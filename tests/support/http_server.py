"""A small real HTTP/1.1 server on 127.0.0.1 for the webhook tests: trio sockets, h11, optional TLS.

Answers are scripted: each request takes the next :class:`Answer` (status,
headers, a delay before answering); when the script runs out it answers 200.
Every request is recorded (method, target, headers, body).
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import h11
import trio


@dataclasses.dataclass
class Answer:
    status: int = 200
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    delay: float = 0.0


@dataclasses.dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    at: float


class HttpServer:
    def __init__(self, script: list[Answer], port: int, scheme: str) -> None:
        self.script = list(script)
        self.requests: list[Received] = []
        self.url = f"{scheme}://127.0.0.1:{port}"
        self.got_request = trio.Condition()

    async def wait_for_requests(self, n: int) -> None:
        async with self.got_request:
            while len(self.requests) < n:
                await self.got_request.wait()

    async def handle(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request: h11.Request | None = None
                body = b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        conn.receive_data(data)
                        continue
                    if isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += bytes(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
                        return
                assert request is not None
                self.requests.append(Received(
                    request.method.decode(), request.target.decode(),
                    {k.decode().lower(): v.decode() for k, v in request.headers}, body, trio.current_time()))
                async with self.got_request:
                    self.got_request.notify_all()
                answer = self.script.pop(0) if self.script else Answer()
                if answer.delay:
                    await trio.sleep(answer.delay)
                await stream.send_all(conn.send(h11.Response(
                    status_code=answer.status, headers=[("content-length", "0"), *answer.headers])))
                await stream.send_all(conn.send(h11.EndOfMessage()))
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError, ssl.SSLError):
            return
        finally:
            await trio.aclose_forcefully(stream)


@asynccontextmanager
async def serve_http(script: list[Answer] | None = None, *,
                     ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[HttpServer]:
    """Serve on a free port of 127.0.0.1 for the block (HTTPS with ``ssl_context``)."""
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        server = HttpServer(script or [], port, "https" if ssl_context else "http")
        serving: list[trio.abc.Listener[trio.abc.Stream]] = list(listeners)
        if ssl_context is not None:
            serving = [trio.SSLListener(lst, ssl_context, https_compatible=True) for lst in listeners]
        nursery.start_soon(trio.serve_listeners, server.handle, serving)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
