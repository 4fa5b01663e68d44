"""Every error tattler-etcd raises on purpose.

One module, one root, so a caller can catch ``TattlerError`` and know it came
from us; foreign errors (httpx, etcd3gw, protobuf, kubernetes) are translated at
the boundary where they happen and chained with ``raise ... from exc`` so the
cause stays readable. Messages name *what* was wrong (the key, the file, the
resource) and never carry an object's body or a secret value.

    TattlerError
    ├── ConfigError                 bad options, flags, kubeconfig, TLS files
    ├── CodecError                  the Kubernetes codec (tattler_etcd.codec)
    │   ├── DecodeError             bytes that are not a valid object
    │   │   ├── TruncatedValueError     the bytes end inside a field
    │   │   ├── UnknownKindError        a valid envelope of an apiVersion/kind we have no schema for
    │   │   ├── EncryptedValueError     ``k8s:enc:`` values: need the cluster's key
    │   │   └── ValueTooLargeError      over the configured size limit
    │   └── EncodeError             a dict that cannot be written as the APIServer would
    ├── PipelineError               the trio pipeline (tattler_etcd.pipeline)
    │   ├── UnsafeObjectError       the safety stage could not inspect an object (it is dropped)
    │   ├── ProcessorError          a processor raised; carries the processor's name
    │   └── RegistrationError       duplicate names, adding after start
    ├── ReaderError                 a reader could not go on
    │   ├── TransientReaderError    worth retrying: connection lost, stream ended, 5xx, 429
    │   ├── HistoryCompactedError   etcd compaction or APIServer 410: relist
    │   ├── PermanentReaderError    retrying will not help
    │   │   ├── AccessDeniedError   401/403: names the resource
    │   │   ├── ConnectTimeoutError no first sync within --connect-timeout: names the endpoint, the last reason
    │   │   ├── NoSuchPathError     404 on the API path: not etcd's gateway (or not this API version)
    │   │   └── TLSError            a TLS failure retrying will not fix; says which
    │   │       ├── CertificateVerifyError      the server's certificate is not trusted, and why
    │   │       ├── ClientCertificateError      the server wants a client certificate, or refused ours
    │   │       └── SchemeMismatchError         http:// to a TLS port, or https:// to a plain one
    │   └── BadKeyError             an etcd key that is not a Kubernetes object
    ├── RecordingError              cassettes: not a cassette, truncated, other version/resources
    └── DeliveryError               a destination (NATS, a webhook) cannot be reached or refuses entries
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "BadKeyError",
    "CertificateVerifyError",
    "ClientCertificateError",
    "CodecError",
    "ConfigError",
    "ConnectTimeoutError",
    "DecodeError",
    "DeliveryError",
    "EncodeError",
    "EncryptedValueError",
    "HistoryCompactedError",
    "NoSuchPathError",
    "PermanentReaderError",
    "PipelineError",
    "ProcessorError",
    "ReaderError",
    "RecordingError",
    "RegistrationError",
    "SchemeMismatchError",
    "TLSError",
    "TattlerError",
    "TransientReaderError",
    "TruncatedValueError",
    "UnknownKindError",
    "UnsafeObjectError",
    "ValueTooLargeError",
]


class TattlerError(Exception):
    """Root of every error raised on purpose by tattler-etcd."""


class ConfigError(TattlerError):
    """An option, flag or configuration file is wrong; the message names which."""


class CodecError(TattlerError):
    """The Kubernetes codec could not do its work.

    ``key`` is where the value came from (an etcd key, a file name) when the
    caller knows it; the codec itself never knows, readers fill it in.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.message = message
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)

    def with_key(self, key: str) -> CodecError:
        """Return the same error naming ``key`` (readers know the key, the codec does not)."""
        err = type(self).__new__(type(self))
        err.__dict__.update(self.__dict__)
        err.key = key
        Exception.__init__(err, f"{key}: {self.message}")
        return err


class DecodeError(CodecError):
    """The bytes are not a Kubernetes object we can read."""


class TruncatedValueError(DecodeError):
    """The bytes end in the middle of a field."""


class UnknownKindError(DecodeError):
    """A well-formed envelope whose apiVersion/kind has no schema here."""

    def __init__(self, message: str, *, api_version: str, kind: str, key: str | None = None) -> None:
        self.api_version = api_version
        self.kind = kind
        super().__init__(message, key=key)


class EncryptedValueError(DecodeError):
    """A value encrypted at rest (``k8s:enc:<provider>:v1:<name>:``)."""

    def __init__(self, message: str, *, provider: str, key: str | None = None) -> None:
        self.provider = provider
        super().__init__(message, key=key)


class ValueTooLargeError(DecodeError):
    """A value over the size limit; refused before any parsing."""


class EncodeError(CodecError):
    """A dict that cannot be encoded the way the APIServer would write it."""


class PipelineError(TattlerError):
    """The pipeline could not carry an entry or a batch."""


class UnsafeObjectError(PipelineError):
    """The safety stage could not inspect an object, so it does not pass."""


class ProcessorError(PipelineError):
    """A processor raised; ``name`` is the name it was registered under."""

    def __init__(self, name: str, cause: BaseException) -> None:
        self.name = name
        super().__init__(f"processor {name!r} failed: {type(cause).__name__}: {str(cause)[:256]}")


class RegistrationError(PipelineError):
    """A reader or processor was added wrongly (duplicate name, after start)."""


class ReaderError(TattlerError):
    """A reader could not go on."""


class TransientReaderError(ReaderError):
    """Worth retrying after a back-off: connection lost, stream ended, 5xx, 429.

    ``retry_after`` is the server's hint in seconds, when it gave one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class HistoryCompactedError(ReaderError):
    """The revision we wanted is gone (etcd compaction, APIServer 410): relist."""


class PermanentReaderError(ReaderError):
    """Retrying will not help; the reader stops with this."""


class AccessDeniedError(PermanentReaderError):
    """401 Unauthorized or 403 Forbidden; the message names the resource."""


class ConnectTimeoutError(PermanentReaderError):
    """The reader never synced within its ``connect_timeout``.

    Before the first sync a source that cannot be reached is more likely a
    wrong address or a firewall than an outage, so the reader gives up and
    says so (``endpoint``, and ``reason``: the last transient error) instead
    of retrying forever. After the first sync it retries forever.
    """

    def __init__(self, message: str, *, endpoint: str, reason: str) -> None:
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(message)


class NoSuchPathError(PermanentReaderError):
    """404 on the API path: the URL is not etcd's HTTP gateway (or serves another API version)."""


class TLSError(PermanentReaderError):
    """The TLS connection failed for a reason a retry will not fix (a setting, a certificate)."""


class CertificateVerifyError(TLSError):
    """The server's certificate is not trusted; the message carries the verifier's reason."""


class ClientCertificateError(TLSError):
    """The server wants a client certificate and got none, or refused the one given."""


class SchemeMismatchError(TLSError):
    """``http://`` to a port that speaks TLS, or ``https://`` to one that does not."""


class BadKeyError(ReaderError):
    """An etcd key that does not name a Kubernetes object; counted and skipped."""


class RecordingError(TattlerError):
    """A cassette that cannot be replayed; the message names the file and why."""


class DeliveryError(TattlerError):
    """A destination (NATS, a webhook) cannot be reached or refused what was sent; the message names it."""
