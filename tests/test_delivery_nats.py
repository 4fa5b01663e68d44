"""NatsProcessor against a real nats-server: stream messages, headers, KV mirror, resends."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio_asyncio

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.delivery.nats import NatsOptions, open_nats_processor, parse_nats_url
from tattler_etcd.errors import ConfigError
from tests.support.nats import NatsServer
from tests.support.pipeline_objects import obj


def entry(change: ChangeType, name: str, *, rv: str = "1", kind: str = "Pod", namespace: str | None = "ns",
          uid: str | None = None) -> Entry:
    api = {"Node": "v1"}.get(kind)
    extra = {"apiVersion": api} if api else {}
    return Entry.from_dict(obj(kind, name=name, rv=rv, namespace=namespace, uid=uid, **extra),
                           change=change, source=SourceType.ETCD)


async def kv_state(url: str, bucket: str = "tattler-state") -> dict[str, dict[str, Any]]:
    """Every live key of the bucket and its JSON value, read with plain nats-py."""
    import nats

    async def read() -> dict[str, dict[str, Any]]:
        nc = await nats.connect(url)
        try:
            kv = await nc.jetstream().key_value(bucket)
            out = {}
            try:
                keys = await kv.keys()
            except nats.js.errors.NoKeysError:
                return {}
            for k in keys:
                out[k] = json.loads((await kv.get(k)).value)
            return out
        finally:
            await nc.close()

    async with trio_asyncio.open_loop() as loop:
        return await trio_asyncio.aio_as_trio(read, loop=loop)()


async def stream_messages(url: str, stream: str = "tattler") -> list[Any]:
    """Every message in the stream, in order: (subject, headers, JSON payload)."""
    import nats

    async def read() -> list[Any]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                m = await js.get_msg(stream, seq)
                out.append((m.subject, dict(m.headers or {}), json.loads(m.data)))
            return out
        finally:
            await nc.close()

    async with trio_asyncio.open_loop() as loop:
        return await trio_asyncio.aio_as_trio(read, loop=loop)()


async def test_batch_goes_to_stream_and_kv(nats_server: NatsServer) -> None:
    a = entry(ChangeType.ADD, "a")
    b = entry(ChangeType.ADD, "b.with.dots", namespace=None, kind="Node")
    async with open_nats_processor(nats_server.url) as proc:
        await proc([a, b])
        await proc([entry(ChangeType.DELETE, "a", rv="2")])
    assert proc.published == 3 and proc.duplicates == 0 and proc.resent == 0
    state = await kv_state(nats_server.url)
    assert list(state) == ["nodes._.b=2Ewith=2Edots"]
    assert state["nodes._.b=2Ewith=2Edots"] == json.loads(b.to_json())
    msgs = await stream_messages(nats_server.url)
    assert [m[0] for m in msgs] == ["tattler.pods.ns.a", "tattler.nodes._.b=2Ewith=2Edots", "tattler.pods.ns.a"]
    assert msgs[0][1] == {"Nats-Msg-Id": "uid-a@1", "Tattler-Change": "add", "Tattler-Kind": "Pod",
                          "Tattler-Uid": "uid-a", "Tattler-Resource-Version": "1"}
    assert msgs[2][1]["Nats-Msg-Id"] == "uid-a@2/delete"
    assert msgs[2][2]["change"] == "delete"


async def test_the_same_change_twice_is_stored_once(nats_server: NatsServer) -> None:
    batch = [entry(ChangeType.ADD, f"p{i}") for i in range(20)]
    async with open_nats_processor(nats_server.url) as one, open_nats_processor(nats_server.url) as two:
        async with trio.open_nursery() as n:
            n.start_soon(one, batch)
            n.start_soon(two, batch)
    assert one.duplicates + two.duplicates == 20
    assert len(await stream_messages(nats_server.url)) == 20
    assert len(await kv_state(nats_server.url)) == 20


def test_url_options() -> None:
    assert parse_nats_url("nats://u:p@h:4222?stream=s&kv=b&prefix=x") == NatsOptions(
        url="nats://u:p@h:4222", stream="s", bucket="b", prefix="x")
    with pytest.raises(ConfigError, match=r"^nats://h:1\?bogus=1: unknown option 'bogus'"):
        parse_nats_url("nats://h:1?bogus=1")
    with pytest.raises(ConfigError, match=r"not a nats://HOST:PORT URL$"):
        parse_nats_url("http://h:1")
