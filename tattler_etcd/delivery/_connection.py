"""One NATS connection, driven from trio.

nats-py is asyncio-only; trio-asyncio runs an asyncio loop inside trio, and
every call into nats-py goes through :meth:`Connection.call`. The processor
crosses that boundary once per batch, not per message, because each crossing
costs an asyncio task.

nats-py reports connection trouble through callbacks and prints tracebacks
when none are given; ours log one line each through ``tattler_etcd.delivery``
(never a payload). Once connected, the connection reconnects by itself for
ever (every 0.5 s): a nats-server restart is something to wait out, not a
reason to stop. A server that cannot be reached at the start is an error.

nats-py and trio-asyncio come with the ``[nats]`` extra; without them,
:func:`require_nats` raises a :class:`~tattler_etcd.errors.ConfigError` that
names it.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any, TypeVar

import trio

from tattler_etcd.errors import ConfigError, DeliveryError

__all__ = ["Connection", "open_connection", "public_url", "require_nats"]

logger = logging.getLogger("tattler_etcd.delivery")

T = TypeVar("T")

#: Attempts at the first connection: a server that is not there at start is an error, not a wait.
_FIRST_ATTEMPTS = 2
#: Seconds the connection gets to close cleanly when its block is left.
_CLOSE_TIMEOUT = 5.0


def require_nats() -> tuple[ModuleType, ModuleType]:
    """``(nats, trio_asyncio)``, or a ConfigError naming the extra that brings them."""
    try:
        import nats
        import trio_asyncio
    except ImportError as exc:
        raise ConfigError(
            f"NATS delivery needs the [nats] extra ({exc.name} is not installed): "
            "pip install 'tattler-etcd[nats]'"
        ) from exc
    return nats, trio_asyncio


def public_url(url: str) -> str:
    """``url`` without a user, password or query (which may hold secrets), for logs and errors."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class Connection:
    """A connected nats-py client and the asyncio loop it lives on.

    Attributes:
        nc: the nats-py client (asyncio-flavoured; call it through :meth:`call`).
        js: its JetStream context.
        url: the server URL, without credentials.
    """

    def __init__(self, loop: Any, nc: Any, url: str, aio_as_trio: Callable[..., Any]) -> None:
        self.loop = loop
        self.nc = nc
        self.js = nc.jetstream()
        self.url = url
        self._aio_as_trio = aio_as_trio

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run the asyncio coroutine function ``fn(*args, **kwargs)`` on this loop, from trio."""
        result: T = await self._aio_as_trio(fn, loop=self.loop)(*args, **kwargs)
        return result

    def wrap_iter(self, it: Any) -> Any:
        """A trio-flavoured view of the asyncio async iterator ``it``."""
        return self._aio_as_trio(it, loop=self.loop)


@asynccontextmanager
async def open_connection(
    url: str, *, name: str = "tattler-etcd", connect_timeout: float = 5.0,
) -> AsyncIterator[Connection]:
    """Connect to ``url`` (``nats://HOST:PORT``, credentials allowed) for the ``async with`` block.

    Raises:
        ConfigError: nats-py or trio-asyncio is missing.
        DeliveryError: the server could not be reached.
    """
    nats, trio_asyncio = require_nats()
    shown = public_url(url)

    try:
        async with _open_client(nats, trio_asyncio, url, shown, name, connect_timeout) as conn:
            yield conn
    except BaseExceptionGroup as group:
        # trio-asyncio's loop is a nursery: whatever ends the block comes out wrapped. A lone error
        # (ours, or the caller's) is raised as itself, as if there were no loop in between.
        lone = _lone(group)
        if lone is None:
            raise
        raise lone from lone.__cause__


def _lone(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


@asynccontextmanager
async def _open_client(
    nats: Any, trio_asyncio: Any, url: str, shown: str, name: str, connect_timeout: float,
) -> AsyncIterator[Connection]:
    closing = False
    down = True  # until connected: the attempts' errors end in one DeliveryError

    async def on_error(exc: Exception) -> None:
        # While reconnecting, every failed attempt (one each 0.5 s) reports here: not worth a warning each.
        logger.log(logging.DEBUG if down else logging.WARNING,
                   "nats %s: %s: %s", shown, type(exc).__name__, str(exc)[:256] or "(no detail)")

    async def on_disconnected() -> None:
        nonlocal down
        down = True
        if not closing:
            logger.warning("nats %s: disconnected; reconnecting", shown)

    async def on_reconnected() -> None:
        nonlocal down
        down = False
        logger.warning("nats %s: reconnected", shown)

    async def on_closed() -> None:
        logger.debug("nats %s: connection closed", shown)

    async with trio_asyncio.open_loop() as loop:
        try:
            nc = await trio_asyncio.aio_as_trio(nats.connect, loop=loop)(
                servers=[url], name=name, connect_timeout=connect_timeout,
                allow_reconnect=True, max_reconnect_attempts=_FIRST_ATTEMPTS, reconnect_time_wait=0.5,
                error_cb=on_error, disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected, closed_cb=on_closed,
            )
        except Exception as exc:  # nats-py raises its own and OSError kinds alike
            raise DeliveryError(f"nats {shown}: cannot connect: {type(exc).__name__}: {str(exc)[:256]}") from exc
        # Connected once: from now on reconnect for ever (nats-py reads this option at each reconnect).
        nc.options["max_reconnect_attempts"] = -1
        down = False
        conn = Connection(loop, nc, shown, trio_asyncio.aio_as_trio)
        try:
            yield conn
        finally:
            closing = True
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + _CLOSE_TIMEOUT
                try:
                    await conn.call(nc.close)
                except Exception as exc:  # noqa: BLE001 - closing is best effort
                    logger.debug("nats %s: close: %s", shown, type(exc).__name__)
