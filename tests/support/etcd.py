"""A real etcd process for tests: free loopback ports, a temp data dir, always stopped.

Tests that need etcd use the ``etcd`` fixture (tests/conftest.py). In CI etcd
must be there (``.ci/run`` installs it): a missing binary fails, never skips.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.process import ServerProcess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_test_certs(directory: str | Path) -> dict[str, str]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (openssl, EC keys).

    Returns the paths: ``ca``, ``server_cert``, ``server_key``, ``client_cert``, ``client_key``.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=tattler-test-ca")
    # The server certificate needs clientAuth too: etcd's HTTP gateway dials
    # etcd's own gRPC endpoint with it.
    for who, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth"),
                     ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{who}.ext").write_text(ext + "\n")
        run("req", *ec, "-keyout", f"{who}.key", "-out", f"{who}.csr", "-subj", f"/CN=tattler-test-{who}")
        run("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{who}.crt", "-days", "2", "-extfile", f"{who}.ext")
    return {"ca": str(d / "ca.crt"), "server_cert": str(d / "server.crt"), "server_key": str(d / "server.key"),
            "client_cert": str(d / "client.crt"), "client_key": str(d / "client.key")}


class EtcdServer(ServerProcess):
    """One etcd member on 127.0.0.1. ``url`` is its client URL (the HTTP gateway).

    With ``tls`` (paths from :func:`make_test_certs`) it serves HTTPS only and
    requires a client certificate signed by that CA.
    """

    name = "etcd"

    def __init__(
        self, data_dir: str | None = None, *, progress_notify: str = "1s", tls: dict[str, str] | None = None,
    ) -> None:
        self.binary = shutil.which("etcd") or "/usr/bin/etcd"
        if not os.path.exists(self.binary):
            raise RuntimeError("etcd is not installed (apt-get install -y etcd-server); .ci/run installs it")
        super().__init__(data_dir, "tattler-etcd-test-")
        self.data_dir = self.state_dir
        self.new_ports()
        self.progress_notify = progress_notify
        self.tls = tls

    def new_ports(self) -> None:
        self.client_port = free_port()
        self.peer_port = free_port()
        self.metrics_port = free_port()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 20.0) -> None:
        """Start (or restart on the same ports and data) and wait until it answers."""
        peer = f"http://127.0.0.1:{self.peer_port}"
        cmd = [
            self.binary, "--name", "t", "--data-dir", self.data_dir,
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"t={peer}", "--initial-cluster-state", "new",
            "--listen-metrics-urls", f"http://127.0.0.1:{self.metrics_port}",
            "--experimental-watch-progress-notify-interval", self.progress_notify,
            "--logger", "zap", "--log-outputs", "stderr",
        ]
        if self.tls:
            cmd += ["--cert-file", self.tls["server_cert"], "--key-file", self.tls["server_key"],
                    "--trusted-ca-file", self.tls["ca"], "--client-cert-auth"]
        self._launch(cmd, self._answers, timeout)

    def _answers(self) -> bool:
        try:
            self.call("/v3/kv/range", {"key": _b64(b"\0")}, timeout=1.0)
        except OSError:
            return False
        return True

    # --- plain blocking helpers for arranging test data -----------------------------

    def call(self, path: str, body: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=self.tls["ca"])
            context.load_cert_chain(self.tls["client_cert"], self.tls["client_key"])
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def put(self, key: str | bytes, value: bytes) -> int:
        """Put one key; returns the new revision."""
        k = key.encode() if isinstance(key, str) else key
        r = self.call("/v3/kv/put", {"key": _b64(k), "value": _b64(value)})
        return int(r["header"]["revision"])

    def put_many(self, items: list[tuple[str, bytes]], per_txn: int = 100) -> int:
        """Put many keys in transactions of ``per_txn`` (sequential puts run ~600/s)."""
        rev = 0
        for i in range(0, len(items), per_txn):
            ops = [{"request_put": {"key": _b64(k.encode()), "value": _b64(v)}} for k, v in items[i:i + per_txn]]
            r = self.call("/v3/kv/txn", {"success": ops})
            rev = int(r["header"]["revision"])
        return rev

    def delete(self, key: str) -> int:
        r = self.call("/v3/kv/deleterange", {"key": _b64(key.encode())})
        return int(r["header"]["revision"])

    def get(self, key: str) -> dict[str, Any] | None:
        r = self.call("/v3/kv/range", {"key": _b64(key.encode())})
        kvs = r.get("kvs") or []
        return kvs[0] if kvs else None

    def revision(self) -> int:
        r = self.call("/v3/kv/range", {"key": _b64(b"\0")})
        return int(r["header"]["revision"])

    def compact(self, revision: int) -> None:
        self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})

    def range_prefix(self, prefix: str) -> list[dict[str, Any]]:
        """Every kv under ``prefix`` (decoded key, raw base64 value, revisions as ints)."""
        k = prefix.encode()
        end = k[:-1] + bytes([k[-1] + 1])
        r = self.call("/v3/kv/range", {"key": _b64(k), "range_end": _b64(end)})
        out = []
        for kv in r.get("kvs") or []:
            out.append({
                "key": base64.b64decode(kv["key"]).decode(),
                "value": base64.b64decode(kv.get("value", "")),
                "create_revision": int(kv.get("create_revision", 0)),
                "mod_revision": int(kv.get("mod_revision", 0)),
            })
        return out


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()
