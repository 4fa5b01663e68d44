"""TLS and secrets, read the same way for every destination: a CA bundle, a client certificate, a token.

Why one place: a webhook and a NATS server take the same options (``ca``,
``cert``, ``key``, ``insecure``; a token from ``token_file`` or
``token_env``), and a bad file or an unset variable must give the same clear
:class:`~tattler_etcd.errors.ConfigError` naming it, before anything
connects, whichever destination it was given to.
"""

from __future__ import annotations

import os
import ssl

from tattler_etcd.errors import ConfigError

__all__ = ["client_context", "secret", "verify_failure"]


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


def secret(option: str, value: str, what: str) -> str:
    """The secret a ``*_file`` option's file holds, or a ``*_env`` option's variable (white space dropped).

    Why: a secret in a URL or on a command line shows in every process list;
    a file or a variable does not.

    Raises:
        ConfigError: the file cannot be read, or the variable is not set (named, never its value).
    """
    if option.endswith("_file"):
        try:
            with open(value, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as exc:
            raise ConfigError(f"{what}: {option} {value}: {exc.strerror}") from exc
    if not os.environ.get(value):
        raise ConfigError(f"{what}: {option}: the variable {value} is not set")
    return os.environ[value].strip()
