"""NatsProcessor against a real nats-server: stream messages, headers, KV mirror, resends."""

from __future__ import annotations

import json
import sys

import pytest
import trio
import trio_asyncio

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.delivery.nats import NatsOptions, open_nats_processor, parse_nats_url
from tattler_etcd.errors import ConfigError, DeliveryError
from tests.support.nats import NatsServer, kv_state, stream_messages
from tests.support.pipeline_objects import obj


def entry(change: ChangeType, name: str, *, rv: str = "1", kind: str = "Pod", namespace: str | None = "ns",
          uid: str | None = None) -> Entry:
    api = {"Node": "v1"}.get(kind)
    extra = {"apiVersion": api} if api else {}
    return Entry.from_dict(obj(kind, name=name, rv=rv, namespace=namespace, uid=uid, **extra),
                           change=change, source=SourceType.ETCD)


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
    assert parse_nats_url("nats://u:p@h:4222?stream=s&kv=b&prefix=x&max_age=86400") == NatsOptions(
        url="nats://u:p@h:4222", stream="s", bucket="b", prefix="x", max_age=86400.0)
    with pytest.raises(ConfigError, match=r"^nats://h:1: unknown option 'bogus'"):
        parse_nats_url("nats://h:1?bogus=1")
    with pytest.raises(ConfigError, match=r"^nats://h:1: max_age must be more than 0 seconds$"):
        parse_nats_url("nats://h:1?max_age=0")
    with pytest.raises(ConfigError, match=r"not a nats://HOST:PORT URL$"):
        parse_nats_url("http://h:1")


async def test_state_feed_gives_initial_state_then_changes(nats_server: NatsServer) -> None:
    from tattler_etcd.delivery.consume import open_state

    node = entry(ChangeType.ADD, "n1", kind="Node", namespace=None)
    async with open_nats_processor(nats_server.url) as proc:
        await proc([entry(ChangeType.ADD, "a"), entry(ChangeType.ADD, "b", namespace="other"), node])
        async with open_state(nats_server.url) as feed:
            initial = []
            async for e in feed:
                initial.append((e.change, e.kind, e.namespace, e.name))
                if len(initial) == 3:
                    break
            assert sorted(initial) == [(ChangeType.ADD, "Node", None, "n1"), (ChangeType.ADD, "Pod", "ns", "a"),
                                       (ChangeType.ADD, "Pod", "other", "b")]
            await proc([entry(ChangeType.UPDATE, "a", rv="2"), entry(ChangeType.DELETE, "b", namespace="other", rv="3")])
            changes = [await feed.__anext__(), await feed.__anext__()]
            assert feed.synced.is_set()
        assert [(e.change, e.name, e.resource_version, e.uid) for e in changes] == [
            (ChangeType.UPDATE, "a", "2", "uid-a"), (ChangeType.DELETE, "b", "3", "uid-b")]
        async with open_state(nats_server.url, resources=["pods"], namespace="ns", until_synced=True) as feed:
            assert [(e.name, e.change) async for e in feed] == [("a", ChangeType.UPDATE)]
        async with open_state(nats_server.url, resources=["nodes", "pods"], namespace="", until_synced=True) as feed:
            assert [e.name async for e in feed] == ["n1"]
        async with open_state(nats_server.url, resources=["pods", "deployments.apps"], until_synced=True) as feed:
            assert [e.name async for e in feed] == ["a"]


async def test_stream_feed_from_sequence_time_and_durable(nats_server: NatsServer) -> None:
    import datetime

    from tattler_etcd.delivery.consume import open_stream

    async with open_nats_processor(nats_server.url) as proc:
        async with open_stream(nats_server.url, until_synced=True) as feed:
            assert [e async for e in feed] == []
        await proc([entry(ChangeType.ADD, f"p{i}") for i in range(5)])
        async with open_stream(nats_server.url, until_synced=True) as feed:
            assert [e.name async for e in feed] == ["p0", "p1", "p2", "p3", "p4"]
        async with open_stream(nats_server.url, start_sequence=4, until_synced=True) as feed:
            assert [e.name async for e in feed] == ["p3", "p4"]
        later = datetime.datetime.now(datetime.UTC)
        await proc([entry(ChangeType.UPDATE, "p1", rv="2")])
        async with open_stream(nats_server.url, start_time=later, until_synced=True) as feed:
            assert [(e.name, e.change) async for e in feed] == [("p1", ChangeType.UPDATE)]
        async with open_stream(nats_server.url, durable="me", until_synced=True) as feed:
            assert len([e async for e in feed]) == 6
        await proc([entry(ChangeType.DELETE, "p2", rv="3")])
        async with open_stream(nats_server.url, durable="me", until_synced=True) as feed:
            assert [(e.name, e.change) async for e in feed] == [("p2", ChangeType.DELETE)]


async def test_a_batch_is_published_again_until_the_server_is_back(nats_server: NatsServer) -> None:
    options = NatsOptions(url=nats_server.url, ack_timeout=0.3)
    done = trio.Event()
    async with open_nats_processor(options) as proc:
        await proc([entry(ChangeType.ADD, "before")])

        async def publish() -> None:
            await proc([entry(ChangeType.ADD, f"p{i}") for i in range(50)])
            done.set()

        async with trio.open_nursery() as n:
            await trio.to_thread.run_sync(nats_server.kill)
            n.start_soon(publish)
            await trio.sleep(1.0)  # the server stays down for three ack timeouts
            assert not done.is_set() and proc.resent >= 100
            await trio.to_thread.run_sync(nats_server.start)
            with trio.fail_after(30):
                await done.wait()
    names = sorted(m[2]["name"] for m in await stream_messages(nats_server.url))
    assert names == sorted(["before", *(f"p{i}" for i in range(50))])
    assert len(await kv_state(nats_server.url)) == 51


async def test_no_server_is_a_clear_error() -> None:
    from tests.support.etcd import free_port

    url = f"nats://user:secret@127.0.0.1:{free_port()}"
    with pytest.raises(DeliveryError, match=r"^nats nats://127\.0\.0\.1:\d+: cannot connect: NoServersError"):
        async with open_nats_processor(url):
            pass


async def test_without_the_extra_a_config_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nats", None)
    with pytest.raises(ConfigError, match=r"^NATS delivery needs the \[nats\] extra \(nats is not installed\): "
                                          r"pip install 'tattler-etcd\[nats\]'$"):
        async with open_nats_processor("nats://127.0.0.1:4222"):
            pass


async def test_feeds_go_on_through_a_server_restart(nats_server: NatsServer) -> None:
    from tattler_etcd.delivery.consume import open_state, open_stream

    async with open_nats_processor(nats_server.url) as proc:
        await proc([entry(ChangeType.ADD, "a")])
        async with open_state(nats_server.url) as state, open_stream(nats_server.url) as stream, \
                open_stream(nats_server.url, durable="d") as durable:
            for feed in (state, stream, durable):
                assert (await feed.__anext__()).name == "a"
            await trio.to_thread.run_sync(nats_server.kill)
            await trio.to_thread.run_sync(nats_server.start)
            await proc([entry(ChangeType.DELETE, "a", rv="2"), entry(ChangeType.ADD, "b", rv="3")])
            with trio.fail_after(30):
                for feed in (state, stream, durable):
                    assert [(e.name, e.change) for e in (await feed.__anext__(), await feed.__anext__())] == [
                        ("a", ChangeType.DELETE), ("b", ChangeType.ADD)]


async def test_a_lost_consumer_is_made_again_where_it_stopped(nats_server: NatsServer,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import nats

    from tattler_etcd.delivery import consume
    from tattler_etcd.delivery.consume import open_state

    monkeypatch.setattr(consume, "_FETCH_WAIT", 0.5)  # notice the loss after 0.5 s of silence, not 5

    async def delete_consumers() -> None:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        for info in await js.consumers_info("KV_tattler-state"):
            await js.delete_consumer("KV_tattler-state", info.name)
        await nc.close()

    async with open_nats_processor(nats_server.url) as proc:
        await proc([entry(ChangeType.ADD, "a")])
        async with open_state(nats_server.url) as feed:
            assert (await feed.__anext__()).name == "a"
            async with trio_asyncio.open_loop() as loop:
                await trio_asyncio.aio_as_trio(delete_consumers, loop=loop)()
            await proc([entry(ChangeType.UPDATE, "a", rv="2"), entry(ChangeType.ADD, "b", rv="3")])
            with trio.fail_after(30):
                got = [await feed.__anext__(), await feed.__anext__()]
    assert [(e.name, e.resource_version) for e in got] == [("a", "2"), ("b", "3")]


async def test_refused_and_oversized_messages_are_counted_and_skipped(
        nats_server: NatsServer, caplog: pytest.LogCaptureFixture) -> None:
    import nats
    from nats.js.api import StreamConfig

    async def small_stream() -> None:
        nc = await nats.connect(nats_server.url)
        await nc.jetstream().add_stream(StreamConfig(name="tattler", subjects=["tattler.>"], max_msg_size=600))
        await nc.close()

    async with trio_asyncio.open_loop() as loop:
        await trio_asyncio.aio_as_trio(small_stream, loop=loop)()
    big = entry(ChangeType.ADD, "big")
    big.raw["metadata"]["annotations"] = {"a": "x" * 2_000_000}
    wide = entry(ChangeType.ADD, "wide")
    wide.raw["metadata"]["annotations"] = {"a": "x" * 1000}
    with trio.fail_after(30):
        async with open_nats_processor(nats_server.url) as proc:
            await proc([entry(ChangeType.ADD, "a"), big, wide])
    assert (proc.skipped, proc.failed, proc.resent) == (1, 1, 0)
    assert sorted(await kv_state(nats_server.url)) == ["pods.ns.a", "pods.ns.wide"]
    assert [m[2]["name"] for m in await stream_messages(nats_server.url)] == ["a"]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("nats: skipped Pod/ns/big: its JSON is 2,0") or "Pod/ns/big" in m for m in messages)
    assert any("stream message refused for Pod/ns/wide" in m for m in messages)
    assert not any("x" * 100 in m for m in messages)  # never a body in a log


async def test_one_connection_for_the_processor_and_both_feeds(nats_server: NatsServer) -> None:
    from tattler_etcd.delivery import NatsProcessor, open_connection, open_state, open_stream

    async with open_connection(nats_server.url) as conn:
        proc = NatsProcessor(conn, NatsOptions(url=nats_server.url))
        await proc.setup()
        await proc([entry(ChangeType.ADD, "a"), entry(ChangeType.ADD, "b")])
        async with open_state("unused", connection=conn, until_synced=True) as state, \
                open_stream("unused", connection=conn, until_synced=True) as stream:
            assert sorted([e.name async for e in state]) == ["a", "b"]
            assert [e.name async for e in stream] == ["a", "b"]


async def test_a_lagging_replica_never_sets_a_key_back(nats_server: NatsServer) -> None:
    async with open_nats_processor(nats_server.url) as ahead, open_nats_processor(nats_server.url) as behind:
        await ahead([entry(ChangeType.ADD, "a", rv="5"), entry(ChangeType.ADD, "b", rv="5")])
        await behind([entry(ChangeType.ADD, "a", rv="3"), entry(ChangeType.UPDATE, "b", rv="7")])
        assert behind.stale == 1
        assert {k: v["resourceVersion"] for k, v in (await kv_state(nats_server.url)).items()} == {
            "pods.ns.a": "5", "pods.ns.b": "7"}
        await ahead([entry(ChangeType.DELETE, "b", rv="6")])  # older than what "behind" wrote
        await behind([entry(ChangeType.DELETE, "a", rv="9")])
        assert ahead.stale == 1
        assert await kv_state(nats_server.url) == {"pods.ns.b": json.loads(entry(ChangeType.UPDATE, "b", rv="7")
                                                                           .to_json())}
    async with open_nats_processor(nats_server.url) as restarted:
        await restarted([entry(ChangeType.UPDATE, "b", rv="7"), entry(ChangeType.ADD, "a", rv="10")])
        assert restarted.stale == 1
    assert sorted(await kv_state(nats_server.url)) == ["pods.ns.a", "pods.ns.b"]


async def test_the_same_key_twice_in_a_batch(nats_server: NatsServer) -> None:
    """A name deleted and made again (two uids, one key) in one batch: written in order."""
    async with open_nats_processor(nats_server.url) as proc:
        await proc([entry(ChangeType.DELETE, "a", rv="4", uid="old"), entry(ChangeType.ADD, "a", rv="5", uid="new")])
        assert (proc.stale, proc.failed) == (0, 0)
    state = await kv_state(nats_server.url)
    assert (state["pods.ns.a"]["uid"], state["pods.ns.a"]["change"]) == ("new", "add")


async def test_max_age_is_the_made_streams_limit(nats_server: NatsServer) -> None:
    import nats

    async def max_age() -> float:
        nc = await nats.connect(nats_server.url)
        info = await nc.jetstream().stream_info("tattler")
        await nc.close()
        return float(info.config.max_age or 0)

    async with open_nats_processor(nats_server.url + "?max_age=3600"):
        pass
    async with trio_asyncio.open_loop() as loop:
        assert await trio_asyncio.aio_as_trio(max_age, loop=loop)() == 3600.0


async def test_its_counts_are_prometheus_metrics_of_the_runner(nats_server: NatsServer) -> None:
    # What the processor skipped inside a batch it took without raising shows only in its own
    # counts: the runner's collector reports them as tattler_delivery_total{processor, outcome}.
    import prometheus_client

    from tattler_etcd.pipeline import Runner
    from tattler_etcd.readers.memory import MemoryReader
    from tests.support.prometheus import samples

    big = entry(ChangeType.ADD, "big")
    big.raw["metadata"]["annotations"] = {"a": "x" * 2_000_000}
    with trio.fail_after(30):
        async with open_nats_processor(nats_server.url) as proc:
            runner = Runner(batch_window=0.01)
            runner.add_reader(MemoryReader([entry(ChangeType.ADD, "a"), entry(ChangeType.ADD, "b"), big]))
            runner.add_processor("mirror", proc)
            registry = prometheus_client.CollectorRegistry()
            registry.register(runner.collector())
            await runner.run()
    got = samples(prometheus_client.generate_latest(registry).decode())
    delivered = {dict(labels)["outcome"]: v for (name, labels), v in got.items() if name == "tattler_delivery_total"}
    assert delivered == {"published": 2, "duplicates": 0, "resent": 0, "failed": 0, "skipped": 1, "stale": 0,
                         "kv_conflicts": 0, "swept": 0}
    assert got[("tattler_processor_entries_total", (("processor", "mirror"),))] == 3
