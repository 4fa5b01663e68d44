"""Delivery beyond this machine: NATS JetStream (a stream and a KV state mirror) and webhooks.

Readers feed the pipeline; these processors take its batches to places other
programs on other machines read from. See ``docs/delivery.md``.
"""

from __future__ import annotations
