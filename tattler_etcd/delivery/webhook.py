"""POST each batch to a webhook as a CloudEvents batch.

:class:`WebhookProcessor` sends one request per batch, content type
``application/cloudevents-batch+json``: a JSON array with one structured
CloudEvent (spec 1.0) per entry::

    {"specversion": "1.0", "id": "<uid>@<resourceVersion>", "source": "tattler-etcd",
     "type": "tattler-etcd.update", "subject": "pods/default/web-1", "time": "...",
     "datacontenttype": "application/json", "data": {<the entry's JSON form>}}

``id`` is the change's stable id (:func:`~tattler_etcd.delivery.subjects.change_id`):
the same on every replica and every retry, so a receiver can drop repeats.
``subject`` is ``<resource>/<namespace>/<name>`` (``<resource>/<name>`` when
cluster-scoped).

Retries: a 5xx answer, a 408, a timeout or a lost connection is retried after
a back-off (0.5 s doubling to 30 s); a 429 waits what ``Retry-After`` says
(seconds or an HTTP date, at most 5 minutes; a 503 may say it too). By default it retries for ever
(under the BLOCK policy nothing is lost); ``max_attempts`` gives up after so
many and raises :class:`~tattler_etcd.errors.DeliveryError` (the runner logs
and counts it, and goes on). Any other answer (a 400, a 401...) and a
certificate the client does not trust will not get better by retrying: the
batch is given up at once with a DeliveryError naming the status.

TLS: ``ca`` (a CA bundle to verify the server), ``cert``/``key`` (a client
certificate), ``insecure`` (no verification: tests and trusted networks
only). ``token`` is sent as ``Authorization: Bearer``; it never appears in a
log or an error.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import http
import json
import logging
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

from tattler_etcd.data import Entry
from tattler_etcd.delivery._connection import public_url
from tattler_etcd.delivery._tls import client_context, secret, verify_failure
from tattler_etcd.delivery.subjects import change_id, resource_name
from tattler_etcd.errors import ConfigError, DeliveryError, TattlerError

__all__ = ["CONTENT_TYPE", "WebhookOptions", "WebhookProcessor", "open_webhook_processor", "parse_webhook_url"]

logger = logging.getLogger("tattler_etcd.delivery")

#: The CloudEvents JSON batch format's media type.
CONTENT_TYPE = "application/cloudevents-batch+json"

#: Longest Retry-After honoured, in seconds.
MAX_RETRY_AFTER = 300.0


@dataclasses.dataclass(frozen=True)
class WebhookOptions:
    """Where and how to POST.

    Attributes:
        url: the http(s) URL to POST to.
        token: a bearer token (``Authorization: Bearer <token>``), or None.
        ca: a CA bundle (PEM) to verify the server with, instead of the system's.
        cert: a client certificate (PEM); ``key`` its key (when not in the same file).
        insecure: do not verify the server's certificate.
        timeout: seconds for one request (connect, send, answer).
        max_attempts: attempts per batch before giving up (None: never give up).
        backoff: the first retry's delay in seconds; it doubles up to ``max_backoff``.
        source: the events' ``source`` attribute.
    """

    url: str
    token: str | None = dataclasses.field(default=None, repr=False)
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False
    timeout: float = 10.0
    max_attempts: int | None = None
    backoff: float = 0.5
    max_backoff: float = 30.0
    source: str = "tattler-etcd"


#: Query keys :func:`parse_webhook_url` takes out of the URL (the rest stays in it).
_QUERY_KEYS = ("ca", "cert", "key", "insecure", "timeout", "max_attempts", "token_file", "token_env")


def parse_webhook_url(text: str, *, ignore: Sequence[str] = ()) -> WebhookOptions:
    """:class:`WebhookOptions` from ``https://HOST/PATH?ca=FILE&cert=FILE&key=FILE&token_file=FILE``.

    The keys ``ca``, ``cert``, ``key``, ``insecure`` (1/true), ``timeout``,
    ``max_attempts``, ``token_file`` (read now, surrounding white space
    dropped) and ``token_env`` (an environment variable holding the token)
    are taken out of the URL; other query keys stay in it, as do those in
    ``ignore`` (the caller takes them out, as the CLI does ``policy``).

    Raises:
        ConfigError: not an http(s) URL, a bad value, an unreadable token file or an unset variable.
    """
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{public_url(text)}: not an http:// or https:// URL")
    kept: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key in ignore:
            continue
        if key not in _QUERY_KEYS:
            kept.append((key, value))
        elif key in ("ca", "cert", "key"):
            values[key] = value
        elif key == "insecure":
            values["insecure"] = value.lower() in ("", "1", "true", "yes")
        elif key == "timeout":
            try:
                values["timeout"] = float(value)
            except ValueError:
                raise ConfigError(f"{public_url(text)}: timeout must be a number of seconds, not {value!r}") from None
            if values["timeout"] <= 0:
                raise ConfigError(f"{public_url(text)}: timeout must be more than 0 seconds")
        elif key == "max_attempts":
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(f"{public_url(text)}: max_attempts must be a whole number, 1 or more")
            values["max_attempts"] = int(value)
        else:  # token_file, token_env
            values["token"] = secret(key, value, public_url(text))
    url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(kept)))
    return WebhookOptions(url=url, **values)


def _ssl_context(o: WebhookOptions) -> ssl.SSLContext:
    return client_context(f"webhook {public_url(o.url)}", ca=o.ca, cert=o.cert, key=o.key, insecure=o.insecure)


class _Retry(Exception):
    """An attempt failed in a way worth retrying; ``after`` is the server's wish, if it said."""

    def __init__(self, why: str, after: float | None = None) -> None:
        super().__init__(why)
        self.after = after


class WebhookProcessor:
    """A processor POSTing each batch as CloudEvents (see the module docstring).

    Build it with :func:`open_webhook_processor`, which owns the HTTP client.
    """

    def __init__(self, options: WebhookOptions, client: httpx.AsyncClient) -> None:
        self.options = options
        self._client = client
        self._shown = public_url(options.url)
        headers = {"Content-Type": CONTENT_TYPE}
        if options.token:
            headers["Authorization"] = f"Bearer {options.token}"
        self._headers = headers
        self._source = b',"source":' + json.dumps(options.source).encode()
        #: Entries in batches the server accepted.
        self.delivered = 0
        #: Attempts that were retried.
        self.retries = 0
        #: Entries in batches given up (logged, and raised as DeliveryError).
        self.failed = 0
        #: Entries left out because their JSON could not be made (logged with the key).
        self.skipped = 0

    def delivery_counts(self) -> dict[str, int]:
        """The counts above by name, for ``tattler_delivery_total{processor, outcome}`` (pipeline/metrics.py)."""
        return {"delivered": self.delivered, "retries": self.retries, "failed": self.failed,
                "skipped": self.skipped}

    def _event(self, entry: Entry, now: str) -> bytes:
        resource = resource_name(entry.api_version, entry.kind)
        subject = f"{resource}/{entry.namespace}/{entry.name}" if entry.namespace else f"{resource}/{entry.name}"
        head = json.dumps({
            "specversion": "1.0", "id": change_id(entry), "type": f"tattler-etcd.{entry.change.value}",
            "subject": subject, "time": now, "datacontenttype": "application/json",
        }, separators=(",", ":"), ensure_ascii=False).encode()
        return b"".join((head[:-1], self._source, b',"data":', entry.to_json_bytes(), b"}"))

    def body(self, batch: Iterable[Entry]) -> bytes:
        """The request body for ``batch``: the CloudEvents JSON batch (entries that fail are skipped)."""
        now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
        events: list[bytes] = []
        for entry in batch:
            try:
                events.append(self._event(entry, now))
            except TattlerError as exc:
                self.skipped += 1
                logger.warning("webhook: skipped %s: %s", entry.key, str(exc)[:256])
        return b"[" + b",".join(events) + b"]"

    async def __call__(self, batch: Iterable[Entry]) -> None:
        entries = list(batch)
        body = self.body(entries)
        if body == b"[]":
            return
        o = self.options
        delay = o.backoff
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._post(body)
            except _Retry as exc:
                if o.max_attempts is not None and attempt >= o.max_attempts:
                    self.failed += len(entries)
                    raise DeliveryError(
                        f"webhook {self._shown}: gave up a batch of {len(entries)} after {attempt} attempts: {exc}"
                    ) from None
                wait = min(exc.after, MAX_RETRY_AFTER) if exc.after is not None else delay
                self.retries += 1
                logger.warning("webhook %s: %s; retrying in %.1fs", self._shown, exc, wait)
                await trio.sleep(wait)
                delay = min(delay * 2, o.max_backoff)
            except DeliveryError:
                self.failed += len(entries)
                raise
            else:
                self.delivered += len(entries)
                return

    async def _post(self, body: bytes) -> None:
        try:
            resp = await self._client.post(self.options.url, content=body, headers=self._headers)
        except httpx.TimeoutException:
            raise _Retry(f"no answer within {self.options.timeout:g}s") from None
        except httpx.TransportError as exc:
            cause = verify_failure(exc)
            if cause is not None:
                raise DeliveryError(f"webhook {self._shown}: the server's certificate is not trusted: "
                                    f"{cause.verify_message}") from None
            raise _Retry(f"{type(exc).__name__}: {str(exc)[:200] or 'connection failed'}") from None
        status = resp.status_code
        if 200 <= status < 300:
            return
        if status == 429:
            raise _Retry("429 Too Many Requests", _retry_after(resp.headers.get("Retry-After")))
        if status >= 500 or status == 408:
            raise _Retry(_status(resp), _retry_after(resp.headers.get("Retry-After")))
        raise DeliveryError(f"webhook {self._shown}: {_status(resp)}: the batch was refused")


def _status(resp: httpx.Response) -> str:
    """``503 Service Unavailable``: the standard phrase when the server sent none."""
    phrase = resp.reason_phrase
    if not phrase:
        try:
            phrase = http.HTTPStatus(resp.status_code).phrase
        except ValueError:
            phrase = ""
    return f"{resp.status_code} {phrase}".rstrip()


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: a number of seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


@asynccontextmanager
async def open_webhook_processor(url_or_options: str | WebhookOptions) -> AsyncIterator[WebhookProcessor]:
    """The processor, with an HTTP client (TLS as the options say) open for the block.

    Raises:
        ConfigError: a bad URL or TLS file.
    """
    options = parse_webhook_url(url_or_options) if isinstance(url_or_options, str) else url_or_options
    verify: ssl.SSLContext | bool = _ssl_context(options) if options.url.startswith("https:") else True
    async with httpx.AsyncClient(verify=verify, timeout=options.timeout) as client:
        yield WebhookProcessor(options, client)
