"""A TCP proxy on 127.0.0.1 that can stop forwarding without closing: a dead connection, made on purpose.

A half-open connection (a peer that vanished, a NAT entry that expired, a
proxy that hung) sends nothing and closes nothing; only silence shows it.
:meth:`TcpProxy.freeze` does that to every connection open at the time, and
leaves the listener working, so a client that reconnects gets through.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target_port``; started by :func:`open_tcp_proxy`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        #: Connections accepted so far.
        self.accepted = 0
        self._open: list[_Connection] = []

    def freeze(self) -> None:
        """Stop forwarding on every connection open now; keep them open. New connections are not affected."""
        for conn in self._open:
            conn.frozen = True
            conn.done.set()
        self._open = []

    async def _handle(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        conn = _Connection()
        self._open.append(conn)
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        except OSError:
            await client.aclose()
            return
        async with client, upstream:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pump, client, upstream, conn)
                nursery.start_soon(_pump, upstream, client, conn)
                await conn.done.wait()
                nursery.cancel_scope.cancel()
            if conn.frozen:
                await trio.sleep_forever()  # both sockets stay open, silent, until the test ends


class _Connection:
    def __init__(self) -> None:
        self.frozen = False
        self.done = trio.Event()


async def _pump(src: trio.SocketStream, dst: trio.SocketStream, conn: _Connection) -> None:
    try:
        while True:
            data = await src.receive_some(65536)
            if not data or conn.frozen:
                break
            await dst.send_all(data)
    except trio.BrokenResourceError:
        pass
    finally:
        conn.done.set()  # one side closed: close both (an honest close is passed on)


@asynccontextmanager
async def open_tcp_proxy(target_port: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(target_port)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, proxy._handle, 0, host="127.0.0.1"))
        proxy.port = listeners[0].socket.getsockname()[1]
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()
