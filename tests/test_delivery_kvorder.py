"""The KV mirror never goes back: compare-and-set puts, against a real nats-server.

Replicas batch the same history differently and deliver it late; whatever
the order their puts reach the server, each key must end at (and never pass
through anything older than) the newest version any of them delivered.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio_asyncio

from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.delivery._kvorder import newer
from tattler_etcd.delivery.nats import NatsOptions, NatsProcessor, open_nats_processor
from tests.support.nats import NatsServer, kv_state
from tests.support.pipeline_objects import obj

pytestmark = pytest.mark.nats

ADD, UPDATE, DELETE, SNAPSHOT = ChangeType.ADD, ChangeType.UPDATE, ChangeType.DELETE, ChangeType.SNAPSHOT


def pod(change: ChangeType, name: str, rv: int, uid: str | None = None) -> Entry:
    return Entry.from_dict(obj("Pod", name=name, rv=str(rv), namespace="ns", uid=uid or f"uid-{name}"),
                           change=change, source=SourceType.ETCD)


def held(state: dict[str, dict[str, Any]], name: str) -> tuple[str, str] | None:
    value = state.get(f"pods.ns.{name}")
    return None if value is None else (value["uid"], value["resourceVersion"])


async def kv_history(url: str, bucket: str = "tattler-state") -> list[Any]:
    """Every message the bucket's stream still holds, in order: (subject, headers), with plain nats-py."""
    import nats

    async def read() -> list[Any]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(f"KV_{bucket}")
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    m = await js.get_msg(f"KV_{bucket}", seq)
                except nats.js.errors.NotFoundError:
                    continue  # replaced by a later put (history)
                out.append((m.subject, dict(m.headers or {})))
            return out
        finally:
            await nc.close()

    async with trio_asyncio.open_loop() as loop:
        history: list[Any] = await trio_asyncio.aio_as_trio(read, loop=loop)()
        return history


async def make_bucket(url: str, history: int) -> None:
    """The bucket made beforehand with ``history`` (the processor uses it as it is): every put stays readable."""
    import nats

    async def make() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().create_key_value(bucket="tattler-state", history=history)
        finally:
            await nc.close()

    async with trio_asyncio.open_loop() as loop:
        await trio_asyncio.aio_as_trio(make, loop=loop)()


def test_the_order_of_versions() -> None:
    # newer(rv, uid, deleted, current rv, current uid, current deleted)
    assert newer(152, "a", False, 72, "a", False) and not newer(72, "a", False, 152, "a", False)
    assert not newer(72, "a", False, 72, "a", False)  # the same version is not newer
    assert newer(72, "a", True, 72, "a", False)  # the delete of what is there
    assert not newer(72, "a", False, 72, "a", True)
    assert newer(80, "b", False, 72, "a", True)  # a re-created key replaces the old uid's delete marker
    assert newer(72, "b", False, 72, "a", True)  # the ghost rule's DELETE carries the new uid's version
    assert not newer(72, "a", True, 72, "b", False)  # ... and never deletes the new uid
    assert not newer(60, "a", True, 72, "b", False)  # a late DELETE of an older uid


async def test_a_late_replica_older_than_the_bucket_is_skipped(nats_server: NatsServer) -> None:
    """Replica B merged 72 into 152; replica A, late, delivers 72 after B's 152: the key stays at 152."""
    async with open_nats_processor(nats_server.url) as a, open_nats_processor(nats_server.url) as b:
        await b([pod(ADD, "web", 10)])
        await b([pod(UPDATE, "web", 152)])
        await a([pod(ADD, "web", 10)])  # the same change B stored: the bucket's stream drops the copy
        await a([pod(UPDATE, "web", 72)])
        assert held(await kv_state(nats_server.url), "web") == ("uid-web", "152")
        assert (a.stale, a.kv_conflicts) == (1, 1)  # A had to read the key once to know
        await a([pod(UPDATE, "web", 100)])  # now A knows: skipped with no read
        assert (a.stale, a.kv_conflicts) == (2, 1)
        await a([pod(UPDATE, "web", 160)])  # newer than the bucket: put
        await b([pod(UPDATE, "web", 152)])  # B's own resend: B knows the key holds it, nothing sent
        assert (b.stale, b.kv_conflicts) == (1, 0)
        await b([pod(UPDATE, "web", 155)])  # newer than B knew, older than A's 160: skipped after a read
        assert (b.stale, b.kv_conflicts) == (2, 1)
        assert b.failed == a.failed == 0
    assert held(await kv_state(nats_server.url), "web") == ("uid-web", "160")


async def test_a_late_delete_of_an_old_uid_leaves_the_new_uid(nats_server: NatsServer) -> None:
    async with open_nats_processor(nats_server.url) as a, open_nats_processor(nats_server.url) as b:
        await b([pod(ADD, "web", 10, uid="X")])
        await b([pod(DELETE, "web", 20, uid="X")])
        await b([pod(ADD, "web", 30, uid="Y")])
        # A relist's DELETE of X (at its position, 25), late: Y lives at the key since 30.
        await a([pod(DELETE, "web", 25, uid="X")])
        assert (a.stale, a.kv_conflicts) == (1, 1)
        # Now A knows Y: older changes of X are not even sent.
        await a([pod(ADD, "web", 10, uid="X"), pod(DELETE, "web", 20, uid="X")])
        await a([pod(UPDATE, "web", 15, uid="X")])
        assert (a.stale, a.kv_conflicts) == (4, 1)
        assert held(await kv_state(nats_server.url), "web") == ("Y", "30")
        # The ghost rule: a relist's DELETE of a replaced uid carries the new object's version, in the
        # same batch as the new object's SNAPSHOT: the same key twice in one batch.
        await a([pod(DELETE, "web", 40, uid="Y"), pod(SNAPSHOT, "web", 40, uid="Z")])
        assert held(await kv_state(nats_server.url), "web") == ("Z", "40")
        assert a.kv_conflicts == 1  # the second put of the key went in the next window, knowing the first's
        await b([pod(DELETE, "web", 35, uid="Y")])  # late, after the SNAPSHOT of Z: never a delete of Z
        assert (b.stale, b.kv_conflicts) == (1, 1)
        # A's two, from B: the DELETE of Y is older than Z, and Z is what the key holds: neither is put.
        await b([pod(DELETE, "web", 40, uid="Y"), pod(SNAPSHOT, "web", 40, uid="Z")])
        assert (b.stale, b.kv_conflicts) == (3, 1) and a.failed == b.failed == 0
    assert held(await kv_state(nats_server.url), "web") == ("Z", "40")


async def test_replicas_racing_with_different_batches_never_take_a_key_back(nats_server: NatsServer) -> None:
    """Three replicas deliver one history, each merging its own random runs of versions, side by side.

    The bucket keeps up to 64 versions of each key, so every put that was
    stored can be read back: per key they must go only forward.
    """
    rng = random.Random(14)
    await make_bucket(nats_server.url, history=64)
    history: list[Entry] = []  # 12 keys, ~8 versions each, some deleted and re-created with a new uid
    uids = {f"p{k}": f"p{k}-0" for k in range(12)}
    for rv in range(1, 101):
        name = f"p{rng.randrange(12)}"
        if rng.random() < 0.15:
            history.append(pod(DELETE, name, rv, uid=uids[name]))
            uids[name] = f"{name}-{rv}"
        else:
            history.append(pod(UPDATE, name, rv, uid=uids[name]))

    def batches() -> list[list[Entry]]:
        """The history cut into random windows, each keeping the newest change per uid, as the batcher does."""
        out, i = [], 0
        while i < len(history):
            n = rng.randrange(1, 15)
            newest: dict[str, Entry] = {}
            for e in history[i:i + n]:
                newest.pop(e.uid, None)
                newest[e.uid] = e
            out.append(list(newest.values()))
            i += n
        return out

    async def replica(proc: NatsProcessor, plan: list[list[Entry]]) -> None:
        for batch in plan:
            await proc(batch)
            await trio.sleep(rng.random() * 0.01)

    async with open_nats_processor(nats_server.url) as a, open_nats_processor(nats_server.url) as b, \
            open_nats_processor(nats_server.url) as c:
        plans = [batches() for _ in range(3)]
        async with trio.open_nursery() as n:
            for proc, plan in zip((a, b, c), plans, strict=True):
                n.start_soon(replica, proc, plan)
        # A replica restarted far behind replays its whole plan: nothing of it may land.
        await replica(a, plans[0])
    assert a.failed == b.failed == c.failed == 0
    last: dict[str, Entry] = {}
    for e in history:
        last[e.name] = e
    state = await kv_state(nats_server.url)
    assert {k: (v["uid"], v["resourceVersion"]) for k, v in state.items()} == {
        f"pods.ns.{e.name}": (e.uid, e.resource_version) for e in last.values() if e.change is not DELETE}
    seen: dict[str, tuple[int, str, bool]] = {}
    for subject, headers in await kv_history(nats_server.url):
        version = (int(headers["Tattler-Resource-Version"]), headers["Tattler-Uid"],
                   headers.get("KV-Operation") == "DEL")
        if subject in seen:
            assert newer(*version, *seen[subject]), (subject, seen[subject], version)
        seen[subject] = version
    assert a.stale > 0  # the replay's puts were all skipped


async def test_a_restart_on_a_populated_bucket_reads_the_versions_in_one_pass(nats_server: NatsServer) -> None:
    names = [f"p{i}" for i in range(300)]
    async with open_nats_processor(nats_server.url) as first:
        await first([pod(ADD, n, 10) for n in names])
        await first([pod(DELETE, n, 20) for n in names[:50]])
    # A value put by an older tattler-etcd (no version headers), and one by another client (not an entry).
    import nats

    async def foreign() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            kv = await nc.jetstream().key_value("tattler-state")
            await kv.put("pods.ns.old", pod(ADD, "old", 50).to_json_bytes())
            await kv.put("pods.ns.other", b"not an entry")
        finally:
            await nc.close()

    async with trio_asyncio.open_loop() as loop:
        await trio_asyncio.aio_as_trio(foreign, loop=loop)()

    async with open_nats_processor(nats_server.url) as again:
        # Older than the bucket: all skipped without a read (the start-up pass knew every version).
        await again([pod(UPDATE, n, 5) for n in names])
        assert (again.stale, again.kv_conflicts) == (300, 0)
        # Newer: one conditional put each, every expected sequence right, no read.
        await again([pod(UPDATE, n, 30) for n in names])
        assert again.kv_conflicts == 0
        # Values without version headers are read when first written, then decided.
        await again([pod(UPDATE, "old", 40), pod(ADD, "other", 40)])
        assert (again.stale, again.kv_conflicts) == (301, 2)
    state = await kv_state(nats_server.url)
    assert all(held(state, n) == (f"uid-{n}", "30") for n in names)
    assert held(state, "old") == ("uid-old", "50")
    assert held(state, "other") == ("uid-other", "40")


async def test_stale_puts_are_logged_by_key_without_values(nats_server: NatsServer,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    async with open_nats_processor(NatsOptions(url=nats_server.url, stream="")) as proc:
        await proc([pod(ADD, "web", 10)])
        with caplog.at_level("DEBUG", logger="tattler_etcd.delivery"):
            await proc([pod(UPDATE, "web", 5)])
    assert proc.stale == 1
    lines = [r.getMessage() for r in caplog.records if "put skipped" in r.getMessage()]
    assert lines == ["nats: KV pods.ns.web holds this version or a newer one: put skipped"]
    assert "uid-web" not in caplog.text  # the key, never the value
