"""What the etcd reader does before its first request: no CA bundle loaded when no connection can use TLS."""

from __future__ import annotations

import pytest

from tattler_etcd.readers.etcd import EtcdReader

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("urls", "verify"), [
    ("http://127.0.0.1:2379", False),
    ("http://127.0.0.1:2379,http://[::1]:2379", False),
    ("http://127.0.0.1:2379,https://127.0.0.1:2380", True),
    ("https://127.0.0.1:2379", True),
])
def test_the_ca_bundle_is_loaded_only_where_tls_can_happen(no_proxy_env: pytest.MonkeyPatch, urls: str,
                                                            verify: bool) -> None:
    assert EtcdReader(urls)._default_verify() is verify


@pytest.mark.parametrize("var", ["HTTP_PROXY", "all_proxy"])
def test_a_proxy_from_the_environment_keeps_verification_on(no_proxy_env: pytest.MonkeyPatch, var: str) -> None:
    no_proxy_env.setenv(var, "https://proxy.example:3128")
    assert EtcdReader("http://127.0.0.1:2379")._default_verify() is True
