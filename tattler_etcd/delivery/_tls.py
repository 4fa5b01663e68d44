"""The TLS context every destination builds the same way: a CA bundle, a client certificate, or none of it.

Why one place: a webhook and a NATS server take the same four options
(``ca``, ``cert``, ``key``, ``insecure``), and a bad file must give the same
clear :class:`~tattler_etcd.errors.ConfigError` naming it, before anything
connects, whichever destination it was given to.
"""

from __future__ import annotations

import ssl

from tattler_etcd.errors import ConfigError

__all__ = ["client_context", "verify_failure"]


def client_context(what: str, *, ca: str | None = None, cert: str | None = None, key: str | None = None,
                   insecure: bool = False) -> ssl.SSLContext:
    """A client-side context: the system's CAs or ``ca``, and ``cert``/``key`` when given.

    ``what`` names the destination in errors (never with credentials).

    Raises:
        ConfigError: a file that cannot be read or is not what it should be, or a key without a cert.
    """
    try:
        ctx = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{what}: ca {ca}: {getattr(exc, 'strerror', None) or exc}") from exc
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{what}: cert {cert}: {getattr(exc, 'strerror', None) or exc}") from exc
    elif key:
        raise ConfigError(f"{what}: key given without cert")
    return ctx


def verify_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification error in ``exc``'s chain of causes, if there is one.

    Why: a server certificate we do not trust will not be trusted on the next
    try either; callers turn it into an error that stops, not a retry.
    """
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 20:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return None
