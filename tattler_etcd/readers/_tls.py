"""Naming the cause of a failed connection, so TLS mistakes fail at once with their reason.

httpx reports most TLS problems as a bare ``ConnectError`` or ``ReadError``:
the ``ssl`` error is at the bottom of the cause chain when the handshake
itself failed (an untrusted server certificate), and lost altogether when the
server's alert arrives while httpcore writes the request (a server that
wants a client certificate: TLS 1.3 finishes the client's side of the
handshake first, and httpcore ignores a failed write to read the answer).
Retrying cannot fix any of these, so they must not look transient.

:func:`translate` maps a transport error to our typed error:

1. an ``ssl`` error in the cause chain names its cause directly;
2. otherwise, for the few symptoms a TLS mistake produces (a connection
   closed before any answer, a handshake cut short), one diagnostic
   connection to the same host and port asks the question again with the
   same TLS settings and reads the server's alert (or, for ``http://``,
   checks whether the port answers a TLS handshake). Only on failure, at
   most a few seconds, never raising;
3. anything else stays a :class:`~tattler_etcd.errors.TransientReaderError`.

Used by the etcd gateway and the APIServer client alike (the translation
layer); retry policy stays in the readers.
"""

from __future__ import annotations

import ssl
import urllib.parse
from typing import TypeVar

import httpx
import trio

from tattler_etcd.errors import (
    CertificateVerifyError,
    ClientCertificateError,
    ReaderError,
    SchemeMismatchError,
    TransientReaderError,
)

__all__ = ["PLAIN_HTTP_TO_TLS", "translate"]

#: What Go's TLS servers (etcd, kube-apiserver) answer to plain HTTP on their TLS port.
PLAIN_HTTP_TO_TLS = b"Client sent an HTTP request to an HTTPS server"

#: The longest a diagnostic connection may take; the original error stands after it.
_PROBE_SECONDS = 5.0
#: Alerts a server sends when it wants a client certificate or refuses ours.
_CLIENT_CERT_ALERTS = frozenset({
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    "TLSV1_ALERT_ACCESS_DENIED",
})
#: A handshake answered by something that is not TLS.
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING", "HTTP_REQUEST",
                      "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"})
_MAX_DETAIL = 256
_E = TypeVar("_E", bound=BaseException)
#: How long a diagnostic TLS connection waits for the server's alert after the handshake.
_ALERT_WAIT = 1.0


async def translate(
    exc: httpx.TransportError,
    *,
    url: str,
    what: str,
    context: ssl.SSLContext | None,
    client_cert: bool | None,
    server_name: str | None = None,
    probe: bool = True,
) -> ReaderError:
    """The typed error for ``exc``, raised by a request to ``url`` before any answer came.

    Args:
        url: the request's URL (its scheme, host and port are probed).
        what: the start of the message (``etcd https://...``, ``list pods``).
        context: the TLS settings the client used (None: the defaults).
        client_cert: whether a client certificate was given (None: not known).
        server_name: the TLS server name when it is not the URL's host.
        probe: whether a diagnostic connection may be made (not through a proxy).
    """
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme == "https"
    cause = _ssl_cause(exc)
    if cause is not None:
        mapped = _from_ssl(cause, what=what, client_cert=client_cert, https=https)
        if mapped is not None:
            return mapped
    if isinstance(exc, httpx.TimeoutException) or parts.hostname is None or not probe:
        return _transient(exc, what)
    port = parts.port or (443 if https else 80)
    reset = isinstance(exc, httpx.ConnectError) and _in_chain(exc, ConnectionResetError)
    if https and (reset or (cause is not None and str(getattr(cause, "reason", "")) in _NOT_TLS)):
        # A handshake answered by something else; a server going away mid-handshake looks the
        # same, so ask the port in plain HTTP before calling it a setting.
        if await _speaks_plain_http(parts.hostname, port):
            return SchemeMismatchError(
                f"{what}: the port answers plain HTTP, not TLS: use http:// (https:// to a plain port)")
        return _transient(exc, what)
    if https and (cause is not None or isinstance(exc, (httpx.ReadError, httpx.WriteError,
                                                         httpx.RemoteProtocolError))):
        reason = await _probe_tls(parts.hostname, port, context, server_name)
        if reason is not None:
            mapped = _from_ssl(reason, what=what, client_cert=client_cert, https=True)
            if mapped is not None:
                return mapped
    elif (not https and isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError))
          and await _speaks_tls(parts.hostname, port)):
        return SchemeMismatchError(
            f"{what}: the port answers with TLS: use https:// (plain HTTP to a TLS port)")
    return _transient(exc, what)


def _transient(exc: httpx.TransportError, what: str) -> TransientReaderError:
    text = str(exc)[:_MAX_DETAIL]
    return TransientReaderError(f"{what}: {type(exc).__name__}: {text}" if text else f"{what}: {type(exc).__name__}")


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    return _in_chain(exc, ssl.SSLError)


def _in_chain(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first ``kind`` in ``exc``'s cause (or context) chain."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, kind):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _from_ssl(err: ssl.SSLError, *, what: str, client_cert: bool | None, https: bool) -> ReaderError | None:
    reason = str(getattr(err, "reason", "") or "")
    if isinstance(err, ssl.SSLCertVerificationError):
        why = str(err.verify_message or reason or "certificate verify failed")
        return CertificateVerifyError(
            f"{what}: certificate verify failed: {why} "
            "(the server's certificate is not signed by a trusted CA, or not for this host)")
    if reason in _CLIENT_CERT_ALERTS:
        if client_cert is None:
            return ClientCertificateError(
                f"{what}: the server wants a client certificate, or refused the one given (TLS alert {reason})")
        if client_cert:
            return ClientCertificateError(
                f"{what}: the server refused our client certificate (TLS alert {reason})")
        return ClientCertificateError(
            f"{what}: the server wants a client certificate and none was given (TLS alert {reason})")
    return None


async def _probe_tls(
    host: str, port: int, context: ssl.SSLContext | None, server_name: str | None,
) -> ssl.SSLError | None:
    """Connect with ``context`` and listen a moment: the ssl error (the server's alert) that comes, if any."""
    ctx = context if context is not None else ssl.create_default_context()
    with trio.move_on_after(_PROBE_SECONDS):
        try:
            tcp = await trio.open_tcp_stream(host, port)
        except OSError:
            return None
        stream = trio.SSLStream(tcp, ctx, server_hostname=server_name or host, https_compatible=True)
        try:
            await stream.do_handshake()
            # TLS 1.3: the server checks our certificate after our side of the
            # handshake ended, and answers with an alert; sending a request
            # first would race it (a reset loses the alert). A server content
            # with us says nothing and waits for a request.
            with trio.move_on_after(_ALERT_WAIT):
                await stream.receive_some(1024)
        except (trio.BrokenResourceError, ssl.SSLError) as exc:
            return _ssl_cause(exc)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(0.5):
                await trio.aclose_forcefully(stream)
    return None


async def _speaks_tls(host: str, port: int) -> bool:
    """Whether ``host:port`` completes a TLS handshake (verification off: only the protocol matters)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with trio.move_on_after(_PROBE_SECONDS):
        try:
            tcp = await trio.open_tcp_stream(host, port)
        except OSError:
            return False
        stream = trio.SSLStream(tcp, ctx, server_hostname=host, https_compatible=True)
        try:
            await stream.do_handshake()
            return True
        except (trio.BrokenResourceError, ssl.SSLError):
            return False
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(0.5):
                await trio.aclose_forcefully(stream)
    return False


async def _speaks_plain_http(host: str, port: int) -> bool:
    """Whether ``host:port`` answers a plain HTTP request with an HTTP status line."""
    with trio.move_on_after(_PROBE_SECONDS):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            return False
        try:
            await stream.send_all(b"GET /version HTTP/1.0\r\nHost: " + host.encode("idna") + b"\r\n\r\n")
            return (await stream.receive_some(5)).startswith(b"HTTP/")
        except trio.BrokenResourceError:
            return False
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(0.5):
                await trio.aclose_forcefully(stream)
    return False
