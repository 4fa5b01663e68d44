"""Resource names -> etcd key prefixes, and keys -> resource, namespace, name."""

from __future__ import annotations

import pytest

from tattler_etcd.errors import BadKeyError, ConfigError
from tattler_etcd.readers.etcd.keys import KeyMap, ResourceSpec, prefix_range_end, resolve_resource


@pytest.mark.parametrize(("name", "prefix"), [
    # The irregular ones, as the APIServer stores them.
    ("nodes", "/registry/minions/"),
    ("services", "/registry/services/specs/"),
    ("endpoints", "/registry/services/endpoints/"),
    ("replicationcontrollers", "/registry/controllers/"),
    ("ingresses", "/registry/ingress/"),
    ("ingresses.networking.k8s.io", "/registry/ingress/"),
    ("apiservices", "/registry/apiregistration.k8s.io/apiservices/"),
    ("customresourcedefinitions", "/registry/apiextensions.k8s.io/customresourcedefinitions/"),
    # The regular ones.
    ("pods", "/registry/pods/"),
    ("namespaces", "/registry/namespaces/"),
    ("persistentvolumes", "/registry/persistentvolumes/"),
    ("deployments.apps", "/registry/deployments/"),
    ("deployments", "/registry/deployments/"),
    ("events.events.k8s.io", "/registry/events/"),
    # Custom resources: group/plural.
    ("widgets.example.com", "/registry/example.com/widgets/"),
    ("example.com/widgets", "/registry/example.com/widgets/"),
])
def test_resource_prefixes(name: str, prefix: str) -> None:
    spec = resolve_resource(name)
    assert KeyMap("/registry", [spec]).key_prefix(spec) == prefix.encode()


def test_custom_prefix_and_scope() -> None:
    pods, nodes, widgets = (resolve_resource(n) for n in ("pods", "nodes", "widgets.example.com"))
    assert (pods.namespaced, nodes.namespaced, widgets.namespaced) == (True, False, None)
    km = KeyMap("/kubernetes.io/", [pods, nodes, widgets])
    assert km.key_prefix(pods) == b"/kubernetes.io/pods/"
    assert widgets.name == "widgets.example.com" and nodes.name == "nodes"


@pytest.mark.parametrize("bad", ["", "Pods", "widgets", "widgets.", ".example.com", "a/b/c", "example.com/"])
def test_bad_resource_names_say_how_to_name_them(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"^resource "):
        resolve_resource(bad)


def test_the_same_storage_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^resources 'events' and 'events.events.k8s.io' are stored under"):
        KeyMap("/registry", [resolve_resource("events"), resolve_resource("events.events.k8s.io")])


def test_overlapping_prefixes_are_refused() -> None:
    services_group = ResourceSpec("specs", "services", "services/specs/x", None)
    with pytest.raises(ConfigError, match=r"^resource prefixes overlap"):
        KeyMap("/registry", [resolve_resource("services"), services_group])


@pytest.mark.parametrize(("key", "want"), [
    (b"/registry/pods/default/web-1", ("pods", "default", "web-1")),
    (b"/registry/minions/node-a", ("nodes", None, "node-a")),
    (b"/registry/services/specs/kube-system/dns", ("services", "kube-system", "dns")),
    (b"/registry/example.com/widgets/w1", ("widgets.example.com", None, "w1")),
    (b"/registry/example.com/widgets/ns/w1", ("widgets.example.com", "ns", "w1")),
])
def test_parse_keys(key: bytes, want: tuple[str, str | None, str]) -> None:
    km = KeyMap("/registry", [resolve_resource(n) for n in ("pods", "nodes", "services", "widgets.example.com")])
    ok = km.parse(key)
    assert (ok.spec.name, ok.namespace, ok.name) == want


@pytest.mark.parametrize(("key", "message"), [
    (b"/registry/pods/web-1", r"^/registry/pods/web-1: pods are namespaced; the key has no namespace$"),
    (b"/registry/minions/ns/n", r"^/registry/minions/ns/n: nodes are cluster-scoped; the key has a namespace$"),
    (b"/registry/pods/a/b/c", r"^/registry/pods/a/b/c: not <namespace>/<name> or <name> under /registry/pods/$"),
    (b"/registry/pods/a//c", r"^/registry/pods/a//c: not <namespace>/<name>"),
    (b"/registry/pods/", r"^/registry/pods/: not <namespace>/<name>"),
    (b"/registry/secrets/a/b", r"^/registry/secrets/a/b: not under any resource read here$"),
    (b"/registry/pods/ns/\xff", r"^/registry/pods/ns/\\xff: not UTF-8$"),
])
def test_keys_that_are_not_objects(key: bytes, message: str) -> None:
    km = KeyMap("/registry", [resolve_resource("pods"), resolve_resource("nodes")])
    with pytest.raises(BadKeyError, match=message):
        km.parse(key)


def test_range_end_is_the_prefix_plus_one() -> None:
    assert prefix_range_end(b"/registry/pods/") == b"/registry/pods0"
    assert prefix_range_end(b"a\xff") == b"b"
    assert prefix_range_end(b"\xff\xff") == b"\0"
