"""Delivery beyond this machine: NATS JetStream (a stream and a KV state mirror) and webhooks.

The pipeline's processors so far wrote to this machine; these take its
batches to places programs on other machines read from, and read them back:

* :func:`open_nats_processor` / :class:`NatsProcessor`: every entry to a
  JetStream stream (replayable, deduplicated across replicas) and the current
  state to a KV bucket (:mod:`.nats`, subjects and keys in :mod:`.subjects`);
* :func:`open_state` / :func:`open_stream`: :class:`EntryFeed` iterators over
  what was delivered, on any machine (:mod:`.consume`);
* :func:`open_webhook_processor` / :class:`WebhookProcessor`: each batch
  POSTed as CloudEvents (:mod:`.webhook`);
* :func:`open_connection` / :class:`Connection`: one NATS connection that
  feeds (``connection=``) and a :class:`NatsProcessor` may share.

NATS needs the ``[nats]`` extra (nats-py, trio-asyncio); importing this
package does not. See ``docs/delivery.md``.
"""

from __future__ import annotations

from tattler_etcd.delivery._connection import Connection as Connection
from tattler_etcd.delivery._connection import ConnectOptions as ConnectOptions
from tattler_etcd.delivery._connection import open_connection as open_connection
from tattler_etcd.delivery.consume import EntryFeed as EntryFeed
from tattler_etcd.delivery.consume import open_state as open_state
from tattler_etcd.delivery.consume import open_stream as open_stream
from tattler_etcd.delivery.nats import NatsOptions as NatsOptions
from tattler_etcd.delivery.nats import NatsProcessor as NatsProcessor
from tattler_etcd.delivery.nats import open_nats_processor as open_nats_processor
from tattler_etcd.delivery.nats import parse_nats_url as parse_nats_url
from tattler_etcd.delivery.webhook import WebhookOptions as WebhookOptions
from tattler_etcd.delivery.webhook import WebhookProcessor as WebhookProcessor
from tattler_etcd.delivery.webhook import open_webhook_processor as open_webhook_processor
from tattler_etcd.delivery.webhook import parse_webhook_url as parse_webhook_url

__all__ = [
    "ConnectOptions",
    "Connection",
    "EntryFeed",
    "NatsOptions",
    "NatsProcessor",
    "WebhookOptions",
    "WebhookProcessor",
    "open_connection",
    "open_nats_processor",
    "open_state",
    "open_stream",
    "open_webhook_processor",
    "parse_nats_url",
    "parse_webhook_url",
]
