"""The readers' own httpx client: a TLS handshake cut by a cancellation closes its socket at once.

httpcore leaves that socket open for the garbage collector (Python then warns
"unclosed <socket.socket ...>" in whichever later test the collection runs):
the one unclosed-socket ResourceWarning the test suite used to filter.
"""

from __future__ import annotations

import gc
import socket
import ssl
from collections.abc import Callable

import httpcore
import httpx
import pytest
import trio

from tattler_etcd.readers._httpclient import _ClosingStream, async_client


def open_sockets_to(port: int) -> list[socket.socket]:
    """Every live, open socket object whose peer is 127.0.0.1:``port``."""
    gc.collect()
    out = []
    for obj in gc.get_objects():
        if isinstance(obj, socket.socket) and obj.family == socket.AF_INET and obj.fileno() >= 0:
            try:
                if obj.getpeername()[1] == port:
                    out.append(obj)
            except OSError:
                pass  # a listener, or not connected
    return out


async def sockets_left_by_a_cut_handshake(make: Callable[[], httpx.AsyncClient]) -> list[socket.socket]:
    """Connect over TLS to a server that never answers the handshake, give up, close the client."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, lambda stream: trio.sleep_forever(), listeners)
        async with make() as client:
            with trio.move_on_after(0.3) as scope:
                await client.get(f"https://127.0.0.1:{port}/")
            assert scope.cancelled_caught
        left = open_sockets_to(port)
        nursery.cancel_scope.cancel()
    return left


@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
async def test_plain_httpx_leaves_the_socket_open() -> None:
    """The cause, kept as a check: when httpcore closes it itself, this fails and the wrapper can go."""
    left = await sockets_left_by_a_cut_handshake(lambda: httpx.AsyncClient(verify=ssl.create_default_context()))
    assert len(left) == 1
    left[0].close()


async def test_the_readers_client_closes_it() -> None:
    left = await sockets_left_by_a_cut_handshake(lambda: async_client(
        verify=ssl.create_default_context(), timeout=30.0, limits=httpx.Limits()))
    assert left == []


class _Inner(httpcore.AsyncNetworkStream):
    """A connection whose peer has ``waiting`` bytes ready: each read takes what it asked for, at most."""

    def __init__(self) -> None:
        self.waiting = b""
        self.asked: list[int] = []

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.asked.append(max_bytes)
        data, self.waiting = self.waiting[:max_bytes], self.waiting[max_bytes:]
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def test_a_large_body_is_read_in_a_few_large_reads_and_small_messages_in_small_ones() -> None:
    """httpcore asks for 64 KiB a read: a 2 MB page took ~31 reads (each a checkpoint); now 3."""
    inner = _Inner()
    stream = _ClosingStream(inner)
    page = bytes(range(256)) * 8192  # 2 MiB
    inner.waiting = page
    got = b""
    while len(got) < len(page):
        got += await stream.read(65536)
    assert got == page
    assert inner.asked == [65536, 8 * 65536, 64 * 65536]
    # The next body is read with the large size at once; a small message then brings it back to 64 KiB.
    inner.waiting = b"x" * 300
    assert await stream.read(65536) == b"x" * 300
    inner.waiting = b"y" * 300
    assert await stream.read(65536) == b"y" * 300
    assert inner.asked[3:] == [64 * 65536, 65536]
    # Never more than 4 MiB.
    inner.waiting = b"z" * (64 << 20)
    for _ in range(6):
        await stream.read(65536)
    assert max(inner.asked) == 4 << 20
