"""The rules follow the schema: every EnvVar.value of every kind, and any path a rule covers, never gets out.

Objects here are built from the schema by test code of their own
(tests/support/schema_objects.py), not by the rules' derivation, so a kind
or an env list the derivation missed fails these tests.
"""

from __future__ import annotations

import copy
import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tattler_etcd import codec
from tattler_etcd.pipeline.redaction import Redactor
from tattler_etcd.replay._redact import scrub_stored_value
from tests.support.schema_objects import full_object, kind_messages, object_with, rule_text, string_paths

ENV_VAR = "k8s.io.api.core.v1.EnvVar"
MARK = "zqENVMARKq"
KINDS = kind_messages()
MESSAGES = sorted((kind, m) for kind, ms in KINDS.items() for m in ms)


def _env_leaf(parent: str, field: Any) -> Any:
    return MARK if parent == ENV_VAR and field.json_name == "value" else None


def _seen(value: bytes, marker: str) -> bool:
    """The marker in the bytes, or in the decoded object (where RawExtensions are unfolded)."""
    if marker.encode() in value:
        return True
    return marker in json.dumps(codec.decode(value))


def test_every_env_value_the_schema_holds_is_redacted_in_every_kind() -> None:
    rules = Redactor()
    with_env = set()
    for kind, message in MESSAGES:
        obj = full_object(message, _env_leaf)
        value = codec.encode(copy.deepcopy(obj))
        if MARK.encode() not in value:
            continue
        with_env.add(kind)
        new, n, _ = rules.scrub_value(value, kind)
        assert n and not _seen(new, MARK), f"{message}: an EnvVar value passed in protobuf"
        as_dict = copy.deepcopy(obj)
        rules.scrub_dict(as_dict)
        assert MARK not in json.dumps(as_dict), f"{message}: an EnvVar value passed in the dict form"
    # The kinds the issue names are among them (the search found the env lists at all).
    assert {"Pod", "PodTemplate", "Deployment", "StatefulSet", "DaemonSet", "CronJob", "PodPreset"} <= with_env


def test_a_kind_added_to_the_schema_would_be_covered_the_same_way() -> None:
    # Every object kind holding an EnvVar anywhere has derived paths; none is listed by hand.
    for kind in KINDS:
        has_env = any(MARK.encode() in codec.encode(full_object(m, _env_leaf)) for m in KINDS[kind])
        assert bool(codec.kind_paths(kind, message=ENV_VAR, field="value")) == has_env, kind


_text = st.text(alphabet=string.ascii_letters + string.digits + "-_.:/+= ", min_size=0, max_size=30)


@st.composite
def placements(draw: st.DrawFn) -> tuple[str, str, tuple[str, ...], bool]:
    """(kind, message, path, needs a user rule): a path some rule covers, in one version of one kind."""
    kind, message = draw(st.sampled_from(MESSAGES))
    defaults = codec.kind_paths(kind, message=ENV_VAR, field="value")
    if defaults and draw(st.booleans()):
        return kind, message, draw(st.sampled_from(defaults)), False
    paths = list(string_paths(message))
    return kind, message, draw(st.sampled_from(paths)), True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(placements(), _text)
def test_a_value_at_any_covered_path_never_gets_out(where: tuple[str, str, tuple[str, ...], bool], tail: str) -> None:
    kind, message, path, user = where
    secret = "zqPROPq" + tail
    rules = Redactor([rule_text(kind, path)] if user else [])
    obj = object_with(message, path, secret)
    # The dict form (JSON values, APIServer JSON).
    as_dict = copy.deepcopy(obj)
    rules.scrub_dict(as_dict)
    assert secret not in json.dumps(as_dict)
    # The protobuf form, as etcd stores it; and what a recording would store.
    value = codec.encode(copy.deepcopy(obj))
    assert secret.encode() in value
    new, n, _ = rules.scrub_value(value, kind)
    assert n >= 1 and not _seen(new, secret)
    stored = scrub_stored_value(value, f"/registry/x/ns/{kind}", rules)
    assert not _seen(stored, secret)
    # Both forms agree: the value is replaced, not removed.
    assert _at(codec.decode(new), path) == _at(as_dict, path) == "REDACTED"


def _at(obj: Any, path: tuple[str, ...]) -> Any:
    for elem in path:
        obj = next(iter(obj.values())) if elem == "*" and isinstance(obj, dict) else (
            obj[0] if elem == "*" else obj[elem])
    return obj


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_annotation_and_label_rules_reach_every_kind(kind: str) -> None:
    rules = Redactor(["annotation:example.com/token", f"{kind}:label:tier"])
    message = KINDS[kind][0]
    obj = object_with(message, ("metadata", "name"), "x")
    obj["metadata"]["annotations"] = {"example.com/token": "zqANNq", "other": "keep"}
    obj["metadata"]["labels"] = {"tier": "zqLABq", "app": "keep"}
    new, n, _ = rules.scrub_value(codec.encode(copy.deepcopy(obj)), kind)
    got = codec.decode(new)["metadata"]
    assert n == 2
    assert got["annotations"] == {"example.com/token": "REDACTED", "other": "keep"}
    assert got["labels"] == {"tier": "REDACTED", "app": "keep"}
    rules.scrub_dict(obj)
    assert obj["metadata"]["annotations"] == got["annotations"] and obj["metadata"]["labels"] == got["labels"]
