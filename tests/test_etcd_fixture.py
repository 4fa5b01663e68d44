"""The etcd fixture itself: a real process that answers, restarts on the same data, and stops."""

from tests.support.etcd import EtcdServer


def test_etcd_fixture_put_get_restart(etcd: EtcdServer) -> None:
    rev = etcd.put("/registry/pods/ns/a", b"hello")
    assert etcd.get("/registry/pods/ns/a") is not None
    etcd.kill()
    etcd.start()
    assert etcd.revision() == rev
    assert [kv["key"] for kv in etcd.range_prefix("/registry/pods/")] == ["/registry/pods/ns/a"]


def test_a_port_taken_before_the_bind_gets_new_ports() -> None:
    # free_port() releases the port it found; another process may bind it before etcd does
    # (seen in CI: "bind: address already in use" on the peer port). running() starts again
    # on new ports instead of failing the test that asked for an etcd.
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = EtcdServer()
        server.peer_port = taken.getsockname()[1]
        with server.running():
            assert server.peer_port != taken.getsockname()[1]
            server.put("/k", b"v")
            got = server.get("/k")
            assert got is not None and got["value"] == "dg=="  # base64 of b"v", as the gateway gives it
