"""A connection that goes silent without closing is found dead, and the reader resumes.

A TCP proxy in front of the server stops forwarding on its open connections
and keeps them open (tests/support/tcp_proxy.py). Real sockets and a real
etcd mean real time, so the intervals are made short and every wait is
bounded with ``trio.fail_after``.
"""

from __future__ import annotations

import functools

import httpx
import pytest
import trio

from tattler_etcd.data import Entry
from tattler_etcd.errors import TransientReaderError
from tattler_etcd.readers._reflector import Backoff
from tattler_etcd.readers.apiserver import ClusterConfig
from tattler_etcd.readers.apiserver.client import APIClient
from tattler_etcd.readers.apiserver.rv import watch_params
from tattler_etcd.readers.etcd import EtcdReader, gateway
from tattler_etcd.readers.etcd.gateway import Gateway, endpoint_client
from tattler_etcd.stats import Counters
from tests.fake_apiserver import FakeCluster, open_fake_apiserver
from tests.fake_apiserver.objects import make_pod
from tests.support.etcd import EtcdServer
from tests.support.etcd_reading import key, obj
from tests.support.tcp_proxy import open_tcp_proxy

#: The etcd fixture sends progress notifications every second (tests/support/etcd.py).
PROGRESS = 1.0


@pytest.mark.etcd
async def test_a_silent_etcd_watch_is_a_dead_connection(etcd: EtcdServer) -> None:
    async with open_tcp_proxy(etcd.client_port) as proxy, httpx.AsyncClient() as client:
        gw = Gateway(client, [endpoint_client(f"http://127.0.0.1:{proxy.port}")], api_path="/v3/",
                     progress_interval=PROGRESS)
        assert gw.watch_idle_timeout == 3 * PROGRESS
        with trio.fail_after(20):
            async with gw.watch(b"/registry/pods/", b"/registry/pods0", etcd.revision() + 1) as stream:
                kinds = [(await stream.__anext__()).kind, (await stream.__anext__()).kind]
                assert kinds == ["created", "progress"]  # a quiet watch still hears from etcd
                proxy.freeze()
                frozen_at = trio.current_time()
                with pytest.raises(TransientReaderError, match=r"nothing received for 3 s .*: a dead connection$"):
                    async for _ in stream:
                        pass
        # Found dead after the idle limit, not before, and well before any TCP timeout.
        assert 3 * PROGRESS - 0.1 <= trio.current_time() - frozen_at < 3 * PROGRESS + 2.0


@pytest.mark.etcd
async def test_an_etcd_watch_past_its_end_is_dead_whatever_the_progress_interval(etcd: EtcdServer) -> None:
    # The cluster's progress interval is etcd's to set (600 s by default): a watch asked
    # to end after 1 s is dead once it is still silent 1 s after that, not 30 minutes later.
    async with open_tcp_proxy(etcd.client_port) as proxy, httpx.AsyncClient() as client:
        gw = Gateway(client, [endpoint_client(f"http://127.0.0.1:{proxy.port}")], api_path="/v3/")
        assert gw.watch_idle_timeout == 3 * gateway.DEFAULT_PROGRESS_INTERVAL
        with trio.fail_after(20), pytest.raises(TransientReaderError, match=r"nothing received for 2 s.*: a dead connection$"):
            async with gw.watch(b"/registry/pods/", b"/registry/pods0", etcd.revision() + 1, timeout=1.0) as s:
                assert (await s.__anext__()).kind == "created"
                proxy.freeze()
                frozen_at = trio.current_time()
                async for _ in s:
                    pass
        assert 2.0 - 0.1 <= trio.current_time() - frozen_at < 4.0


@pytest.mark.etcd
async def test_an_etcd_watch_with_no_answer_at_all_is_a_dead_connection(etcd: EtcdServer) -> None:
    async with open_tcp_proxy(etcd.client_port) as proxy, httpx.AsyncClient() as client:
        gw = Gateway(client, [endpoint_client(f"http://127.0.0.1:{proxy.port}")], api_path="/v3/",
                     progress_interval=PROGRESS)
        with trio.fail_after(20):
            revision = await gw.current_revision()  # leaves a kept-alive connection in the pool
            proxy.freeze()  # the watch goes out on it, and hears nothing, not even headers
            with pytest.raises(TransientReaderError, match=r": no answer for 3 s: a dead connection$"):
                async with gw.watch(b"/registry/pods/", b"/registry/pods0", revision + 1):
                    pass


@pytest.mark.etcd
async def test_the_etcd_reader_resumes_after_a_dead_connection(
    etcd: EtcdServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    # The reader builds its own gateway: tell it how often this etcd sends progress.
    monkeypatch.setattr(gateway, "DEFAULT_PROGRESS_INTERVAL", PROGRESS)
    etcd.put(key("pods", "before", "ns"), obj("pods", "before", "ns"))
    counters = Counters()
    async with open_tcp_proxy(etcd.client_port) as proxy:
        reader = EtcdReader(f"http://127.0.0.1:{proxy.port}", resources=["pods"],
                            backoff_factory=functools.partial(Backoff, initial=0.05, cap=0.1))
        # (buffered: the reader reports started only once its list was handed on)
        send, recv = trio.open_memory_channel[list[Entry]](10)
        async with trio.open_nursery() as nursery:
            with trio.fail_after(20):
                await nursery.start(reader.run, send, counters)
                assert [e.name for e in await recv.receive()] == ["before"]
                # Freeze once the watch is live (it heard a progress notification):
                # a real etcd's timing, so poll, bounded by fail_after.
                while counters["reader.etcd.progress_notifications"] < 1:
                    await trio.sleep(0.05)
                proxy.freeze()
                # Written while the reader's watch is dead: it must still arrive.
                etcd.put(key("pods", "during", "ns"), obj("pods", "during", "ns"))
                assert [e.name for e in await recv.receive()] == ["during"]
            nursery.cancel_scope.cancel()
    assert counters["reader.etcd.retries"] == 1
    assert proxy.accepted >= 2
    assert "nothing received for 3 s (etcd sends progress every 1 s): a dead connection" in caplog.text


async def test_a_silent_apiserver_watch_is_a_dead_connection() -> None:
    cluster = FakeCluster()
    cluster.create("pods", make_pod(1))
    async with open_fake_apiserver(cluster) as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        async with open_tcp_proxy(port) as proxy:
            api = APIClient(ClusterConfig(server=f"http://127.0.0.1:{proxy.port}"), watch_idle_timeout=1.0)
            async with api:
                with trio.fail_after(20):
                    ref = await api.discover("pods")
                    rv = (await api.list_page(ref, {}, protobuf=False)).resource_version
                    params = watch_params(rv, timeout_seconds=600)
                    async with api.watch(ref, params, protobuf=False) as stream:
                        chunks = stream.chunks()
                        proxy.freeze()
                        frozen_at = trio.current_time()
                        with pytest.raises(TransientReaderError,
                                           match=r"^watch pods: nothing received for 1 s: a dead connection$"):
                            async for _ in chunks:
                                pass
                        await chunks.aclose()  # type: ignore[attr-defined]
    assert 1.0 - 0.1 <= trio.current_time() - frozen_at < 3.0


def test_the_apiserver_idle_limit_defaults_to_past_the_watch_timeout() -> None:
    from tattler_etcd.readers.apiserver.client import WATCH_IDLE_GRACE

    assert WATCH_IDLE_GRACE == 30.0
    with pytest.raises(Exception, match=r"^watch idle timeout: must be more than 0 seconds, not 0$"):
        APIClient(ClusterConfig(server="http://127.0.0.1:1"), watch_idle_timeout=0)
