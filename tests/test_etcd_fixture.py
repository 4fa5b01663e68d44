"""The etcd fixture itself: a real process that answers, restarts on the same data, and stops."""

from tests.support.etcd import EtcdServer


def test_etcd_fixture_put_get_restart(etcd: EtcdServer) -> None:
    rev = etcd.put("/registry/pods/ns/a", b"hello")
    assert etcd.get("/registry/pods/ns/a") is not None
    etcd.kill()
    etcd.start()
    assert etcd.revision() == rev
    assert [kv["key"] for kv in etcd.range_prefix("/registry/pods/")] == ["/registry/pods/ns/a"]
