"""Subjects, KV keys and change ids (tattler_etcd.delivery.subjects): the escaping written in its docstring."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tattler_etcd.codec._schema import SCHEMA
from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.delivery.subjects import (
    BUILTIN_GROUPS,
    change_id,
    escape_token,
    kv_key,
    resource_name,
    resource_token,
    subject,
    unescape_token,
)
from tattler_etcd.readers.etcd.keys import BUILTIN_RESOURCES

#: What a KV key may hold (nats-py's check), and what a subject token must not.
KV_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")


@given(st.text())
def test_escaping_round_trips_and_makes_one_safe_token(text: str) -> None:
    token = escape_token(text)
    assert unescape_token(token) == text
    assert KV_KEY.match(token) and "." not in token and token != "_"


@pytest.mark.parametrize(("text", "token"), [
    ("web-1", "web-1"), ("node.one", "node=2Eone"), ("w_1", "w=5F1"), ("a=b", "a=3Db"), ("", "="),
    ("_", "=5F"), ("ü", "=C3=BC"), ("x y*>", "x=20y=2A=3E"),
])
def test_escape_examples(text: str, token: str) -> None:
    assert escape_token(text) == token


@pytest.mark.parametrize("token", ["a.b", "=2", "=zz", "a b", "=C3", "_x"])
def test_unescape_refuses_what_escape_never_writes(token: str) -> None:
    with pytest.raises(ValueError):
        unescape_token(token)


def test_builtin_groups_are_the_readers_groups() -> None:
    assert {g for g, _ in BUILTIN_RESOURCES} == set(BUILTIN_GROUPS)


def test_every_builtin_resource_is_the_guess_from_its_kind() -> None:
    """Each built-in resource has a kind in the codec's schema whose guessed plural is that resource."""
    by_group: dict[str, set[str]] = {}
    for api_version, package in SCHEMA.groups.items():
        group = api_version.rpartition("/")[0]
        for name in SCHEMA.messages:
            if name.startswith(package + ".") and "." not in name[len(package) + 1:]:
                by_group.setdefault(group, set()).add(resource_name(api_version, name.rpartition(".")[2]))
    # The aggregator's and CRDs' own kinds are not in the codec's schema (stored as JSON).
    for group, kind in (("apiregistration.k8s.io", "APIService"), ("apiextensions.k8s.io", "CustomResourceDefinition")):
        by_group.setdefault(group, set()).add(resource_name(f"{group}/v1", kind))
    missing = sorted(f"{r}.{g}" for g, r in BUILTIN_RESOURCES if r not in by_group.get(g, set()))
    assert missing == []


@pytest.mark.parametrize(("api_version", "kind", "resource"), [
    ("v1", "Pod", "pods"), ("v1", "Endpoints", "endpoints"), ("networking.k8s.io/v1", "Ingress", "ingresses"),
    ("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"), ("apps/v1", "Deployment", "deployments"),
    ("example.com/v1", "Widget", "widgets.example.com"),
])
def test_resource_name(api_version: str, kind: str, resource: str) -> None:
    assert resource_name(api_version, kind) == resource


def test_resource_token_takes_the_names_run_takes() -> None:
    assert resource_token("deployments.apps") == resource_token("deployments") == "deployments"
    assert resource_token("widgets.example.com") == "widgets=2Eexample=2Ecom"


def entry(change: ChangeType, namespace: str | None, name: str, kind: str = "Pod", api: str = "v1") -> Entry:
    return Entry(change=change, source=SourceType.ETCD, uid="u1", api_version=api, kind=kind,
                 namespace=namespace, name=name, resource_version="42", raw={})


def test_keys_subjects_and_ids() -> None:
    pod = entry(ChangeType.UPDATE, "default", "web.1")
    assert kv_key(pod) == "pods.default.web=2E1"
    assert subject(pod) == "tattler.pods.default.web=2E1"
    assert subject(pod, "x") == "x.pods.default.web=2E1"
    assert kv_key(entry(ChangeType.ADD, None, "n1", "Node")) == "nodes._.n1"
    assert kv_key(entry(ChangeType.ADD, "shop", "w", "Widget", "example.com/v1")) == "widgets=2Eexample=2Ecom.shop.w"
    assert change_id(pod) == change_id(entry(ChangeType.SNAPSHOT, "default", "web.1")) == "u1@42"
    assert change_id(entry(ChangeType.DELETE, "default", "web.1")) == "u1@42/delete"
