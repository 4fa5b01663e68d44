"""``HOST:PORT`` flags, checked before anything connects (apart from the server, which pulls in hypercorn)."""

from __future__ import annotations

from tattler_etcd.errors import ConfigError

__all__ = ["parse_address"]


def parse_address(text: str, *, flag: str = "--metrics-address") -> str:
    """``HOST:PORT`` (``[::1]:9090`` for IPv6, ``:9090`` for every interface) as hypercorn's bind.

    Raises:
        ConfigError: no port, or not a number from 0 to 65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{flag} {text!r}: give HOST:PORT, e.g. 0.0.0.0:9090 or 127.0.0.1:9090")
    return f"{host or '0.0.0.0'}:{int(port)}"
