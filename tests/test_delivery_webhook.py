"""WebhookProcessor against a real HTTP(S) server on 127.0.0.1 (tests/support/http_server.py)."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.delivery.webhook import (
    CONTENT_TYPE,
    WebhookOptions,
    open_webhook_processor,
    parse_webhook_url,
)
from tattler_etcd.errors import ConfigError, DeliveryError
from tests.support.etcd import make_test_certs
from tests.support.http_server import Answer, serve_http
from tests.support.pipeline_objects import obj


def pod(name: str, change: ChangeType = ChangeType.ADD, rv: str = "1", namespace: str | None = "ns") -> Entry:
    return Entry.from_dict(obj("Pod", name=name, rv=rv, namespace=namespace), change=change,
                           source=SourceType.APISERVER)


def options(url: str, **kw: object) -> WebhookOptions:
    kw.setdefault("backoff", 0.01)
    return WebhookOptions(url=url + "/hook", **kw)  # type: ignore[arg-type]


async def test_a_batch_is_one_cloudevents_batch() -> None:
    batch = [pod("a"), pod("b", ChangeType.DELETE, rv="7"), pod("n", namespace=None)]
    async with serve_http() as server, open_webhook_processor(options(server.url, token="t0k")) as proc:
        await proc(batch)
    [req] = server.requests
    assert (req.method, req.target) == ("POST", "/hook")
    assert req.headers["content-type"] == CONTENT_TYPE
    assert req.headers["authorization"] == "Bearer t0k"
    events = json.loads(req.body)
    assert [e["data"] for e in events] == [json.loads(e.to_json()) for e in batch]
    first = events[0]
    assert {k: v for k, v in first.items() if k not in ("data", "time")} == {
        "specversion": "1.0", "id": "uid-a@1", "source": "tattler-etcd", "type": "tattler-etcd.add",
        "subject": "pods/ns/a", "datacontenttype": "application/json"}
    assert first["time"].endswith("Z")
    assert (events[1]["id"], events[1]["type"], events[2]["subject"]) == (
        "uid-b@7/delete", "tattler-etcd.delete", "pods/n")
    assert proc.delivered == 3 and proc.retries == 0


async def test_5xx_and_timeouts_are_retried_with_backoff() -> None:
    script = [Answer(500), Answer(200, delay=2.0), Answer(502), Answer(200)]
    async with serve_http(script) as server, \
            open_webhook_processor(options(server.url, timeout=0.3, backoff=0.05)) as proc:
        await proc([pod("a")])
    assert len(server.requests) == 4
    assert len({r.body for r in server.requests}) == 1  # the same batch each time
    gaps = [b.at - a.at for a, b in zip(server.requests, server.requests[1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.3 + 0.1 and gaps[2] >= 0.2
    assert proc.retries == 3 and proc.delivered == 1
    assert proc.delivery_counts() == {"delivered": 1, "retries": 3, "failed": 0, "skipped": 0}


async def test_429_waits_what_retry_after_says() -> None:
    async with serve_http([Answer(429, [("Retry-After", "1")])]) as server, \
            open_webhook_processor(options(server.url)) as proc:
        await proc([pod("a")])
    first, second = server.requests
    assert second.at - first.at >= 1.0
    assert proc.retries == 1


async def test_a_4xx_gives_the_batch_up_at_once() -> None:
    async with serve_http([Answer(400)]) as server, open_webhook_processor(options(server.url)) as proc:
        with pytest.raises(DeliveryError, match=r"^webhook http://127\.0\.0\.1:\d+/hook: 400 Bad Request: "
                                                r"the batch was refused$"):
            await proc([pod("a"), pod("b")])
        await proc([pod("c")])
    assert len(server.requests) == 2 and proc.failed == 2 and proc.delivered == 1


async def test_max_attempts_gives_up() -> None:
    async with serve_http([Answer(503)] * 3) as server, \
            open_webhook_processor(options(server.url, max_attempts=2)) as proc:
        with pytest.raises(DeliveryError, match=r"gave up a batch of 1 after 2 attempts: 503 Service Unavailable$"):
            await proc([pod("a")])
    assert len(server.requests) == 2


def _server_context(certs: dict[str, str], *, client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs["server_cert"], certs["server_key"])
    if client_cert:
        ctx.load_verify_locations(certs["ca"])
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def test_tls_ca_client_certificate_and_insecure(tmp_path: Path) -> None:
    certs = make_test_certs(tmp_path)
    async with serve_http(ssl_context=_server_context(certs, client_cert=False)) as server:
        async with open_webhook_processor(options(server.url, ca=certs["ca"])) as proc:
            await proc([pod("a")])
        async with open_webhook_processor(options(server.url, insecure=True)) as proc:
            await proc([pod("b")])
        async with open_webhook_processor(options(server.url)) as proc:
            with pytest.raises(DeliveryError, match=r"^webhook https://127\.0\.0\.1:\d+/hook: the server's "
                                                    r"certificate is not trusted: .*$"):
                await proc([pod("c")])
    assert len(server.requests) == 2
    async with serve_http(ssl_context=_server_context(certs, client_cert=True)) as server:
        async with open_webhook_processor(options(server.url, ca=certs["ca"], cert=certs["client_cert"],
                                                  key=certs["client_key"])) as proc:
            await proc([pod("a")])
    assert len(server.requests) == 1


async def test_bad_tls_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^webhook https://h/: ca /nope\.pem: No such file or directory$"):
        async with open_webhook_processor(WebhookOptions(url="https://h/", ca="/nope.pem")):
            pass
    with pytest.raises(ConfigError, match=r"^webhook https://h/: key given without cert$"):
        async with open_webhook_processor(WebhookOptions(url="https://h/", key="/k.pem")):
            pass


def test_url_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    o = parse_webhook_url(f"https://h:8443/p?x=1&ca=/ca.pem&token_file={token}&insecure=1&timeout=2&max_attempts=3")
    assert o == WebhookOptions(url="https://h:8443/p?x=1", token="s3cret", ca="/ca.pem", insecure=True,
                               timeout=2.0, max_attempts=3)
    assert "s3cret" not in repr(o)
    monkeypatch.setenv("HOOK_TOKEN", "t")
    assert parse_webhook_url("http://h/?token_env=HOOK_TOKEN&policy=drop", ignore=["policy"]).token == "t"
    with pytest.raises(ConfigError, match=r"^https://h/p: token_env: the variable NOPE is not set$"):
        parse_webhook_url("https://h/p?token_env=NOPE")
    with pytest.raises(ConfigError, match=r"^https://h/p: token_file /nope: No such file or directory$"):
        parse_webhook_url("https://h/p?token_file=/nope")
    with pytest.raises(ConfigError, match=r"^ftp://h/: not an http:// or https:// URL$"):
        parse_webhook_url("ftp://h/")
    with pytest.raises(ConfigError, match=r"max_attempts must be a whole number, 1 or more$"):
        parse_webhook_url("https://h/?max_attempts=0")
