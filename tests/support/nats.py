"""A real nats-server with JetStream for tests: a free loopback port, a temp store, always stopped.

Tests that need it use the ``nats_server`` fixture (tests/conftest.py). In CI
the binary must be there (``scripts/setup.sh`` installs Debian's
``nats-server``): a missing binary fails, never skips.

:meth:`NatsServer.kill` is a crash (SIGKILL); :meth:`NatsServer.start` then
brings the server back on the same port and the same store, where JetStream
finds its streams and KV buckets again.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from typing import Any

import trio_asyncio

from tests.support.etcd import free_port
from tests.support.process import ServerProcess


class NatsServer(ServerProcess):
    """One ``nats-server -js`` on 127.0.0.1; ``url`` is ``nats://127.0.0.1:PORT``."""

    name = "nats-server"

    def __init__(self, store_dir: str | None = None, *, tls: dict[str, str] | None = None, verify_clients: bool = False,
                 user: str | None = None, password: str | None = None, token: str | None = None,
                 nkey_user: str | None = None) -> None:
        """``tls``: paths from ``tests.support.etcd.make_test_certs`` (serve TLS only; with
        ``verify_clients`` a client certificate signed by that CA is required). ``user``/``password``,
        ``token`` or ``nkey_user`` (a user's public nkey): what a client must present."""
        self.binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not os.path.exists(self.binary):
            raise RuntimeError("nats-server is not installed (apt-get install -y nats-server); "
                               "scripts/setup.sh installs it")
        super().__init__(store_dir, "tattler-nats-test-")
        self.store_dir = self.state_dir
        self.new_ports()
        self._extra: list[str] = []
        if tls:
            self._extra += ["--tlsverify" if verify_clients else "--tls", "--tlscert", tls["server_cert"],
                            "--tlskey", tls["server_key"]]
            if verify_clients:
                self._extra += ["--tlscacert", tls["ca"]]
        if user:
            self._extra += ["--user", user, "--pass", password or ""]
        if token:
            self._extra += ["--auth", token]
        if nkey_user:
            conf = os.path.join(self.store_dir, "auth.conf")
            with open(conf, "w") as f:
                f.write(f'authorization {{ users = [ {{ nkey: "{nkey_user}" }} ] }}\n')
            self._extra += ["-c", conf]

    def new_ports(self) -> None:
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        """Start (or restart on the same port and store) and wait until it accepts connections."""
        cmd = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", self.store_dir, *self._extra]
        self._launch(cmd, self._answers, timeout)

    def _answers(self) -> bool:
        """True once the server greets a client with its INFO line (and JetStream is on)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                s.settimeout(1.0)
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        return False
                    data += chunk
                return data.startswith(b"INFO ") and b'"jetstream":true' in data
        except OSError:
            return False


# --- reading what was delivered, with plain nats-py (not the code under test) ---------


async def kv_state(url: str, bucket: str = "tattler-state", **connect: Any) -> dict[str, dict[str, Any]]:
    """Every live key of the bucket and its JSON value, read with plain nats-py.

    One pull consumer of the last message per key, every fetch bounded in
    time: nats-py's ``kv.keys()`` (an ordered push consumer waiting for a
    marker with no timeout) was seen to wait for ever while writers were busy.
    """
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    async def read() -> dict[str, dict[str, Any]]:
        nc = await nats.connect(url, **connect)
        try:
            js = nc.jetstream()
            await js.key_value(bucket)  # BucketNotFoundError while there is none
            prefix = f"$KV.{bucket}."
            sub = await js.pull_subscribe(prefix + ">", stream=f"KV_{bucket}", config=ConsumerConfig(
                deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, ack_policy=AckPolicy.NONE, inactive_threshold=30))
            out: dict[str, dict[str, Any]] = {}
            remaining = (await sub.consumer_info()).num_pending
            while remaining > 0:
                for m in await sub.fetch(min(remaining, 256), timeout=10):
                    remaining = min(remaining - 1, m.metadata.num_pending)
                    if (m.headers or {}).get("KV-Operation") not in ("DEL", "PURGE"):
                        out[m.subject[len(prefix):]] = json.loads(m.data)
            await sub.unsubscribe()
            return out
        finally:
            await nc.close()

    async with trio_asyncio.open_loop() as loop:
        state: dict[str, dict[str, Any]] = await trio_asyncio.aio_as_trio(read, loop=loop)()
        return state


async def stream_messages(url: str, stream: str = "tattler", **connect: Any) -> list[Any]:
    """Every message in the stream, in order: (subject, headers, JSON payload)."""
    import nats

    async def read() -> list[Any]:
        nc = await nats.connect(url, **connect)
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
