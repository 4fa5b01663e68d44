"""Recordings carry no credential: no userinfo, no token or password, no echo of them in error bodies."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
import trio

from tattler_etcd.cli import main
from tattler_etcd.replay import Recorder, RecordingInfo, dump_cassette, read_recording
from tattler_etcd.replay._redact import CredentialScrubber, without_userinfo
from tests.support.etcd import EtcdServer
from tests.support.leaks import leaked

PASSWORD = "pw-zqPASSWORDq"
TOKEN = "tok.zqTOKENq.xyz"
BEARER = "zqBEARERq-abcdef"


async def _server(request: httpx.Request) -> httpx.Response:
    """A gateway that hands out a token, then refuses a request and echoes what it got (as some servers do)."""
    body = request.content.decode()
    if request.url.path == "/v3/auth/authenticate":
        return httpx.Response(200, json={"header": {}, "token": TOKEN})
    echo = f"bad request {request.url} auth={request.headers.get('authorization')} body={body}"
    return httpx.Response(400, content=json.dumps({"error": echo, "code": 3}).encode(),
                          headers={"content-type": "application/json"})


async def _record() -> Recorder:
    recorder = Recorder(scrub_value=lambda v, k: v, scrub_object=lambda o: o)
    async with httpx.AsyncClient(transport=recorder.transport(httpx.MockTransport(_server))) as client:
        r = await client.post("http://root:" + PASSWORD + "@127.0.0.1:2379/v3/auth/authenticate",
                              json={"name": "root", "password": PASSWORD})
        token = r.json()["token"]
        assert token == TOKEN  # the reader gets the real token; only the file does not
        await client.post("http://127.0.0.1:2379/v3/kv/range", json={"key": "AA=="},
                          headers={"authorization": token})
        await client.get(f"http://127.0.0.1:2379/api/v1/pods?access_token={BEARER}",
                         headers={"authorization": f"Bearer {BEARER}"})
        basic = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
        await client.get("http://127.0.0.1:2379/api/v1/nodes", headers={"authorization": f"Basic {basic}"})
    return recorder


def test_no_credential_reaches_the_cassette(tmp_path: Path) -> None:
    recorder = trio.run(_record)
    out = tmp_path / "c.yaml"
    info = RecordingInfo(source="etcd", resources=("pods",),
                         endpoint=without_userinfo("http://root:" + PASSWORD + "@127.0.0.1:2379"),
                         timing=tuple(recorder.timings))
    dump_cassette(out, recorder.interactions, info)
    text = out.read_bytes()
    assert leaked([PASSWORD, TOKEN, BEARER, "zqPASSWORDq", "zqTOKENq", "zqBEARERq"], {"cassette": text}) == {}
    assert b"root:" not in text and b"@127.0.0.1" not in text
    # What is left still says what happened: the error bodies are there, redacted.
    assert text.count(b"bad request") == 3 and b"REDACTED" in text


def test_without_userinfo() -> None:
    assert without_userinfo("https://u:p@h:1/x?y=1") == "https://h:1/x?y=1"
    assert without_userinfo("http://h:1") == "http://h:1"
    assert without_userinfo("unix:///run/x") == "unix:///run/x"


def test_short_strings_are_not_treated_as_credentials() -> None:
    # A 3-letter password would turn every "abc" in every body into REDACTED and prove nothing.
    c = CredentialScrubber()
    c.learn_request(httpx.URL("http://u:abc@h/"), httpx.Headers(), b"")
    assert c.text("abcdef") == "abcdef"
    c.learn_request(httpx.URL("http://u:longer-one@h/"), httpx.Headers(), b"")
    assert c.text("x longer-one y") == "x REDACTED y"


@pytest.mark.etcd
def test_record_with_userinfo_in_the_endpoint_writes_none_and_replays(
    etcd: EtcdServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    host = etcd.url.partition("://")[2]
    out = tmp_path / "u.yaml"
    assert main(["record", "--etcd-endpoints", f"http://root:{PASSWORD}@{host}", "--resources", "pods",
                 "--out", str(out), "--duration", "0.3"]) == 0
    capsys.readouterr()
    text = out.read_bytes()
    assert leaked([PASSWORD, "zqPASSWORDq"], {"cassette": text}) == {}
    assert read_recording(out).endpoint == etcd.url
    assert main(["run", "--replay", str(out), "--to", str(tmp_path / "o.jsonl")]) == 0
