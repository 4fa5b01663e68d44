"""``--to nats://...`` and ``--to https://...`` (and ``http://``): the delivery destinations.

Registered in :mod:`tattler_etcd.cli._destinations` by module path, so this
module (and nats-py) is imported only when such a destination is given.
Besides each destination's own query options (:func:`~tattler_etcd.delivery.parse_nats_url`,
:func:`~tattler_etcd.delivery.parse_webhook_url`), both take:

* ``policy=block|drop`` (default ``block``): what the router does while the
  destination is still busy with the previous batch (wait, or skip it for
  this one; see :class:`~tattler_etcd.pipeline.Policy`);
* ``buffer=N`` (default 0): batches that may wait for it.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from tattler_etcd.cli._destinations import Destination, DestinationContext
from tattler_etcd.delivery._connection import public_url
from tattler_etcd.errors import ConfigError
from tattler_etcd.pipeline.routing import Policy

#: The query keys this module takes; the rest belong to the destination.
_ROUTING_KEYS = ("policy", "buffer")


def _routing(dest: str) -> tuple[Policy, int]:
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(dest).query, keep_blank_values=True))
    shown = public_url(dest)
    try:
        policy = Policy(query.get("policy", "block").lower())
    except ValueError:
        raise ConfigError(f"--to {shown}: policy must be block or drop, not {query['policy']!r}") from None
    text = query.get("buffer", "0")
    if not text.isdigit():
        raise ConfigError(f"--to {shown}: buffer must be a whole number of batches, not {text!r}")
    return policy, int(text)


def _check(dest: str, ctx: DestinationContext) -> None:
    shown = public_url(dest)
    if ctx.format != "json":
        raise ConfigError(f"--to {shown}: sends the entries' JSON form; -o {ctx.format} does not apply")
    if isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
        raise ConfigError(f"--to {shown}: needs a live source (--etcd-endpoints, --kubeconfig, --in-cluster): "
                          "a replay runs on a virtual clock, on which network timeouts mean nothing")


@asynccontextmanager
async def nats_destination(dest: str, ctx: DestinationContext) -> AsyncIterator[Destination]:
    """``nats://HOST:PORT[?stream=S&kv=B&policy=drop]``: a JetStream stream and KV state mirror."""
    from tattler_etcd.delivery.nats import open_nats_processor, parse_nats_url

    policy, buffer = _routing(dest)
    options = parse_nats_url(dest, ignore=_ROUTING_KEYS)
    _check(dest, ctx)
    async with open_nats_processor(options) as proc:
        yield Destination("nats", proc, policy, buffer)


@asynccontextmanager
async def webhook_destination(dest: str, ctx: DestinationContext) -> AsyncIterator[Destination]:
    """``https://HOST/PATH[?ca=FILE&token_file=FILE&policy=drop]``: batches POSTed as CloudEvents."""
    from tattler_etcd.delivery.webhook import open_webhook_processor, parse_webhook_url

    policy, buffer = _routing(dest)
    options = parse_webhook_url(dest, ignore=_ROUTING_KEYS)
    _check(dest, ctx)
    async with open_webhook_processor(options) as proc:
        yield Destination("webhook", proc, policy, buffer)
