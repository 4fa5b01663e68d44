"""``/metrics``, ``/healthz`` and ``/readyz`` over HTTP, served by hypercorn inside the trio run.

prometheus-client's own ``start_http_server`` serves from a thread; this
serves the same text format from a task in the caller's nursery, so it stops
with the pipeline and leaves no thread behind.

* ``/metrics``: the Prometheus text format of the given registry;
* ``/healthz``: 200 while the process runs its event loop (a liveness probe:
  a hung loop cannot answer it);
* ``/readyz``: 200 when ``ready()`` says so, else 503; the body is its
  one-line reason either way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import prometheus_client
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from tattler_etcd.errors import ConfigError
from tattler_etcd.service.address import parse_address

__all__ = ["make_app", "serve_endpoints"]

logger = logging.getLogger("tattler_etcd.service.http")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def make_app(registry: prometheus_client.CollectorRegistry, ready: Callable[[], tuple[bool, str]]) -> App:
    """The ASGI app: ``/metrics`` from ``registry``, ``/healthz``, ``/readyz`` from ``ready()``."""
    metrics = prometheus_client.make_asgi_app(registry=registry)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # Nothing to set up or tear down; answering keeps hypercorn from warning.
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if path == "/metrics":
            await metrics(scope, receive, send)
            return
        if path == "/healthz":
            status, body = 200, "ok"
        elif path == "/readyz":
            ok, reason = ready()
            status, body = (200 if ok else 503), reason
        else:
            status, body = 404, "not found: try /metrics, /healthz or /readyz"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
        await send({"type": "http.response.body", "body": (body + "\n").encode()})

    return app


async def serve_endpoints(
    address: str,
    registry: prometheus_client.CollectorRegistry,
    ready: Callable[[], tuple[bool, str]],
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve :func:`make_app` on ``address`` (``HOST:PORT``) until cancelled.

    ``task_status.started(url)`` once listening, with the port bound (``:0``
    picks a free one, which is how tests use it).

    Raises:
        ConfigError: a bad address, or one that cannot be bound (named).
    """
    config = Config()
    config.bind = [parse_address(address)]
    config.accesslog = None
    config.errorlog = logging.getLogger("tattler_etcd.service.hypercorn")
    config.graceful_timeout = 1.0
    try:
        await serve(make_app(registry, ready), config,  # type: ignore[arg-type]
                    task_status=_FirstBind(task_status))
    except* OSError as group:
        # hypercorn binds inside its nurseries: the OSError comes wrapped.
        exc = group.exceptions[0]
        while isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
        text = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"--metrics-address {address}: cannot listen: {text}") from None


class _FirstBind:
    """hypercorn reports its binds as a list; we hand on the first, as a URL."""

    def __init__(self, status: trio.TaskStatus[str]) -> None:
        self._status = status

    def started(self, binds: list[str] | None = None) -> None:
        url = (binds or [""])[0]
        logger.info("serving /metrics, /healthz and /readyz on %s", url)
        self._status.started(url)
