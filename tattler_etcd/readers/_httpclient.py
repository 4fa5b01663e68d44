"""The ``httpx.AsyncClient`` the readers build for themselves, with two fixes around it.

httpcore's trio backend closes the TCP socket when a TLS handshake fails with
an error, but not when it is *cancelled* (it catches ``Exception``, and trio's
``Cancelled`` is a ``BaseException``): the socket stays open until the garbage
collector finds it, and Python then reports ``ResourceWarning: unclosed
<socket.socket ...>`` in whatever code the collection happens to run in. A
reader stopped while it connects over TLS (a shutdown, a ``move_on_after``
around a retrying reader, a connect timeout) did exactly that.
:func:`async_client` wraps the network backend so the socket is closed on the
spot, however the handshake ends. :func:`abandon` closes a streamed watch
body that a reader stops reading, for the same reason.
"""

from __future__ import annotations

import ssl
import typing
from collections.abc import AsyncIterator, Iterable

import httpcore
import httpx
import trio

__all__ = ["abandon", "async_client"]

#: The most one read of a connection asks for (see :class:`_ClosingStream`).
_MAX_READ = 4 << 20


def async_client(
    *,
    verify: ssl.SSLContext | bool,
    timeout: httpx.Timeout | float,
    limits: httpx.Limits,
    base_url: str = "",
    proxy: str | None = None,
    trust_env: bool = True,
    auth: httpx.Auth | None = None,
) -> httpx.AsyncClient:
    """``httpx.AsyncClient(verify=, timeout=, limits=, ...)`` whose cut TLS handshakes close their socket."""
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits, proxy=proxy, trust_env=trust_env)
    pool = transport._pool  # httpx's httpcore pool; it hands its backend to every new connection
    pool._network_backend = _ClosingBackend(pool._network_backend)
    return httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport, trust_env=trust_env,
                             auth=auth)


class _ClosingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _ClosingStream(await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _ClosingStream(await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _ClosingStream(httpcore.AsyncNetworkStream):
    """The connection's stream; also reads more than httpcore asks for while a large body streams in.

    httpcore reads 64 KiB at a time: a 2 MB range page of etcd took ~31 reads,
    each a trio checkpoint where the pipeline's stages ran a slice while the
    page was still on its way (and etcd waits for its next request until the
    page is in). A read that fills what it asked for makes the next one ask
    for 8 times more, up to 4 MiB; a read of less than httpcore's
    size goes back to it (a watch's small messages: a large buffer costs
    ~12 us a read to allocate, a 64 KiB one ~1).
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._size = 0

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        size = max(max_bytes, self._size)
        data = await self._inner.read(size, timeout=timeout)
        if len(data) >= size:
            self._size = min(size * 8, _MAX_READ)
        elif len(data) < max_bytes:
            self._size = 0
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout=timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            return await self._inner.start_tls(ssl_context, server_hostname=server_hostname, timeout=timeout)
        except BaseException:
            # Cancelled (or anything else): the plain socket under the handshake goes now, not at GC.
            with trio.CancelScope(shield=True):
                await self._inner.aclose()
            raise

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


async def abandon(response: httpx.Response, body: AsyncIterator[bytes]) -> None:
    """Close a streamed response we stop reading, and run its body's iterators to their end.

    httpx reads a body through a chain of async generators (``aiter_bytes``
    over ``aiter_raw`` over httpcore's stream); closing only the outermost
    leaves the inner ones suspended for the garbage collector, which trio
    reports as a ResourceWarning. With the response closed first, running the
    chain on ends it at once (StopAsyncIteration or a read error), layer by
    layer. Shielded, so it also runs when we are cancelled, and bounded, so
    cancellation stays prompt. Both readers' watches end through here.
    """
    with trio.CancelScope(shield=True), trio.move_on_after(0.5):
        await response.aclose()
        try:
            async for _ in body:
                pass
        except Exception:  # noqa: BLE001, S110 - a closed stream may say so any way it likes
            pass
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()
