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

TLS and credentials (:class:`ConnectOptions`) come from the URL's query, so
one ``--to`` string says everything: ``ca``/``cert``/``key``/``insecure``/
``tls`` (TLS, required once asked for: a server that does not offer it is
refused before any credential is sent), ``creds`` (a credentials file, as
``nsc`` writes), ``nkey`` (a seed file), ``token_file``/``token_env`` and
``password_env`` (the user is the URL's). Secrets never sit in the URL a
process list shows, and never reach a log.

nats-py and trio-asyncio come with the ``[nats]`` extra; without them,
:func:`require_nats` raises a :class:`~tattler_etcd.errors.ConfigError` that
names it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any, TypeVar

import trio

from tattler_etcd.delivery._tls import client_context, secret, verify_failure
from tattler_etcd.errors import ConfigError, DeliveryError

__all__ = ["CONNECT_QUERY_KEYS", "ConnectOptions", "Connection", "connect_option", "open_connection", "public_url",
           "require_nats"]

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


@dataclasses.dataclass(frozen=True)
class ConnectOptions:
    """TLS and credentials for a NATS connection (from the URL's query; see the module docstring).

    Attributes:
        ca: a CA bundle (PEM) to verify the server with, instead of the system's.
        cert: a client certificate (PEM); ``key`` its key (when not in the same file).
        insecure: do not verify the server's certificate (tests, trusted networks).
        tls: require TLS even with none of the above (the system's CAs).
        creds: a NATS credentials file (user JWT and nkey seed).
        nkey: a file holding an nkey seed.
        token: an authentication token (read from ``token_file`` or ``token_env``).
        password: the URL user's password (read from ``password_env``).
    """

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False
    tls: bool = False
    creds: str | None = None
    nkey: str | None = None
    token: str | None = dataclasses.field(default=None, repr=False)
    password: str | None = dataclasses.field(default=None, repr=False)

    @property
    def wants_tls(self) -> bool:
        """TLS was asked for: the connection must be TLS or not be made."""
        return self.tls or self.insecure or bool(self.ca or self.cert)


#: The query keys :func:`connect_option` takes.
CONNECT_QUERY_KEYS = ("ca", "cert", "key", "insecure", "tls", "creds", "nkey", "token_file", "token_env",
                      "password_env")


def connect_option(values: dict[str, Any], key: str, value: str, shown: str) -> None:
    """Put query option ``key=value`` into ``values`` (:class:`ConnectOptions` fields); ``shown`` names the URL.

    Files are checked now, so a typo is a ConfigError naming the file before anything connects.

    Raises:
        ConfigError: a file that cannot be read, an unset variable, a bad flag value.
    """
    if key in ("insecure", "tls"):
        if value.lower() not in ("", "1", "true", "yes", "0", "false", "no"):
            raise ConfigError(f"{shown}: {key} must be 1/true or 0/false, not {value!r}")
        values[key] = value.lower() in ("", "1", "true", "yes")
    elif key in ("ca", "cert", "key", "creds", "nkey"):
        if not os.access(value, os.R_OK) or not os.path.isfile(value):
            raise ConfigError(f"{shown}: {key} {value}: not a readable file")
        values[key] = value
    elif key in ("token_file", "token_env", "password_env"):
        values["password" if key == "password_env" else "token"] = secret(key, value, shown)
    else:
        raise ConfigError(f"{shown}: unknown connection option {key!r}")


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
    url: str, *, name: str = "tattler-etcd", connect_timeout: float = 5.0, options: ConnectOptions | None = None,
) -> AsyncIterator[Connection]:
    """Connect to ``url`` (``nats://[USER[:PASS]@]HOST:PORT``) for the ``async with`` block.

    ``options``: TLS and credentials. The URL's own query may carry them
    instead (:data:`CONNECT_QUERY_KEYS`), as ``--to`` and ``consume`` give them.

    Raises:
        ConfigError: nats-py or trio-asyncio is missing; a bad connection option.
        DeliveryError: the server could not be reached, does not offer the TLS
            asked for, or its certificate is not trusted.
    """
    nats, trio_asyncio = require_nats()
    shown = public_url(url)
    parts = urllib.parse.urlsplit(url)
    if parts.query:
        values: dict[str, Any] = dataclasses.asdict(options) if options else {}
        for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
            connect_option(values, key, value, shown)
        options = ConnectOptions(**values)
        url = urllib.parse.urlunsplit(parts._replace(query=""))
    options = options or ConnectOptions()
    kwargs = _connect_kwargs(url, options, shown)
    if options.wants_tls:
        await _check_tls(parts, kwargs["tls"], kwargs.get("tls_hostname"), shown, connect_timeout)

    try:
        async with _open_client(nats, trio_asyncio, kwargs.pop("server"), shown, name, connect_timeout,
                                kwargs) as conn:
            yield conn
    except BaseExceptionGroup as group:
        # trio-asyncio's loop is a nursery: whatever ends the block comes out wrapped. A lone error
        # (ours, or the caller's) is raised as itself, as if there were no loop in between.
        lone = _lone(group)
        if lone is None:
            raise
        raise lone from lone.__cause__


def _connect_kwargs(url: str, o: ConnectOptions, shown: str) -> dict[str, Any]:
    """nats-py's ``connect`` arguments for ``o`` (``server``: the URL to give it)."""
    kwargs: dict[str, Any] = {"server": url}
    if o.wants_tls:
        kwargs["tls"] = client_context(f"nats {shown}", ca=o.ca, cert=o.cert, key=o.key, insecure=o.insecure)
        host = urllib.parse.urlsplit(url).hostname
        if host:
            kwargs["tls_hostname"] = host
    elif o.key:
        raise ConfigError(f"nats {shown}: key given without cert")
    if o.creds:
        kwargs["user_credentials"] = o.creds
    if o.nkey:
        kwargs["nkeys_seed"] = o.nkey
    if o.token:
        kwargs["token"] = o.token
    if o.password is not None:
        parts = urllib.parse.urlsplit(url)
        if not parts.username:
            raise ConfigError(f"nats {shown}: password_env needs a user in the URL (nats://USER@HOST:PORT)")
        kwargs["user"] = urllib.parse.unquote(parts.username)
        kwargs["password"] = o.password
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        kwargs["server"] = urllib.parse.urlunsplit(parts._replace(netloc=f"{netloc}:{parts.port}" if parts.port
                                                                  else netloc))
    return kwargs


async def _check_tls(parts: urllib.parse.SplitResult, ctx: Any, hostname: str | None, shown: str,
                     timeout: float) -> None:
    """Before nats-py connects: the server offers TLS, and its certificate is one we trust.

    Why here, on a connection of its own: nats-py upgrades to TLS only when
    the server's greeting asks for it, and otherwise sends its CONNECT
    (credentials included) in clear; and a certificate it does not trust
    makes its ``connect`` wait for ever (nats-py 2.16). So the greeting is
    read and the handshake made first. (A server reached again after a
    reconnect is not checked again.)

    Raises:
        DeliveryError: no answer, not a NATS server, no TLS, or an untrusted certificate.
    """
    host, port = parts.hostname or "127.0.0.1", parts.port or 4222
    try:
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(host, port)
            async with stream:
                data = b""
                while b"\r\n" not in data and len(data) < 65536:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    data += chunk
                line = data.split(b"\r\n", 1)[0]
                try:
                    info = json.loads(line[5:]) if line.startswith(b"INFO ") else None
                except ValueError:
                    info = None
                if not isinstance(info, dict):
                    raise DeliveryError(f"nats {shown}: not a NATS server (no INFO greeting)")
                if not (info.get("tls_required") or info.get("tls_available")):
                    raise DeliveryError(f"nats {shown}: TLS was asked for (ca, cert, insecure or tls) but the "
                                        "server does not offer it; nothing was sent")
                tls = trio.SSLStream(stream, ctx, server_hostname=hostname or host)
                await tls.do_handshake()
    except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
        refused = verify_failure(exc)
        if refused is not None:
            raise DeliveryError(f"nats {shown}: the server's certificate is not trusted: "
                                f"{refused.verify_message}") from None
        raise DeliveryError(f"nats {shown}: cannot connect: {type(exc).__name__}: {str(exc)[:256]}") from exc


def _lone(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


@asynccontextmanager
async def _open_client(
    nats: Any, trio_asyncio: Any, url: str, shown: str, name: str, connect_timeout: float, kwargs: dict[str, Any],
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
                reconnected_cb=on_reconnected, closed_cb=on_closed, **kwargs,
            )
        except Exception as exc:  # nats-py raises its own and OSError kinds alike
            refused = verify_failure(exc)
            if refused is not None:
                raise DeliveryError(f"nats {shown}: the server's certificate is not trusted: "
                                    f"{refused.verify_message}") from exc
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
