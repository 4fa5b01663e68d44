"""User redaction rules: how they are written, checked, and applied alike to every form."""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path

import pytest
import trio

from tattler_etcd import codec
from tattler_etcd.cli import main
from tattler_etcd.data import ChangeType, Entry, SourceType
from tattler_etcd.errors import ConfigError
from tattler_etcd.pipeline import JsonLinesProcessor, Runner
from tattler_etcd.pipeline.redaction import (
    REDACTED,
    REDACTED_DATA,
    Redactor,
    Rule,
    parse_rule,
    read_rules_file,
)
from tattler_etcd.readers.memory import MemoryReader
from tattler_etcd.replay._redact import scrub_stored_value
from tests.support.pipeline_objects import obj, pod_spec

SECRET = "zqRULEq-secret"


@pytest.mark.parametrize(("text", "rule"), [
    ("Pod:spec.containers[*].args", Rule("Pod:spec.containers[*].args", kind="Pod",
                                         path=("spec", "containers", "*", "args"))),
    ("ConfigMap:data.*", Rule("ConfigMap:data.*", kind="ConfigMap", path=("data", "*"))),
    ('Pod:metadata.annotations["a.b/c"]', Rule('Pod:metadata.annotations["a.b/c"]', kind="Pod",
                                               path=("metadata", "annotations", "a.b/c"))),
    ("widgets.example.com:spec.env[*].value", Rule("widgets.example.com:spec.env[*].value",
                                                   resource=("widgets", "example.com"),
                                                   path=("spec", "env", "*", "value"))),
    ("annotation:example.com/token", Rule("annotation:example.com/token", annotation="example.com/token")),
    ("label:tier", Rule("label:tier", label="tier")),
    ("Pod:annotation:x", Rule("Pod:annotation:x", kind="Pod", annotation="x")),
    ("Pod:spec.containers[0].command", Rule("Pod:spec.containers[0].command", kind="Pod",
                                            path=("spec", "containers", "0", "command"))),
])
def test_rules_parse(text: str, rule: Rule) -> None:
    assert parse_rule(text) == rule


@pytest.mark.parametrize(("text", "why"), [
    ("Widget:spec.x", "'Widget' is no kind we know"),
    ("pods:spec.x", "'pods' is neither a kind"),
    ("Pod:spec.bogus", "the path reaches no text value in Pod (it reaches nothing)"),
    ("Pod:spec.containers", "the path reaches no text value in Pod (it reaches message)"),
    ("Pod:spec.activeDeadlineSeconds", "the path reaches no text value in Pod (it reaches int64)"),
    ("Pod:spec..x", "cannot read the path"),
    ("Pod", "write KIND:PATH"),
    ("annotation:", "write KIND:PATH"),
    ("label: two words", "give an label name"),
])
def test_a_rule_that_cannot_match_is_a_config_error_naming_it(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=rf"^redaction rule {re.escape(repr(text))}: .*{re.escape(why)}"):
        parse_rule(text)
    with pytest.raises(ConfigError):
        Runner(redact=[text])


def test_rules_files_yaml_list_mapping_or_lines(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("- Pod:spec.containers[*].args\n- 'annotation:x'\n")
    (tmp_path / "b.yaml").write_text("redact:\n  - ConfigMap:data.*\n")
    (tmp_path / "c.txt").write_text("# comment\nPod:spec.containers[*].args\n\nlabel:tier\n")
    assert read_rules_file(tmp_path / "a.yaml") == ["Pod:spec.containers[*].args", "annotation:x"]
    assert read_rules_file(tmp_path / "b.yaml") == ["ConfigMap:data.*"]
    assert read_rules_file(tmp_path / "c.txt") == ["Pod:spec.containers[*].args", "label:tier"]
    (tmp_path / "d.yaml").write_text("other: 1\n")
    with pytest.raises(ConfigError, match=r"d\.yaml: a mapping needs a 'redact' list"):
        read_rules_file(tmp_path / "d.yaml")
    with pytest.raises(ConfigError, match=r"^--redact-file .*missing\.yaml: No such file"):
        read_rules_file(tmp_path / "missing.yaml")


def test_cli_refuses_a_bad_rule_before_reading(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["run", "--redact", "Nope:x", "--etcd-endpoints", "http://127.0.0.1:1", "--once"]) == 2
    assert "redaction rule 'Nope:x': 'Nope' is no kind we know" in capsys.readouterr().err
    f = tmp_path / "r.txt"
    f.write_text("Pod:spec.nothing\n")
    assert main(["record", "--redact-file", str(f), "--etcd-endpoints", "http://127.0.0.1:1",
                 "--out", str(tmp_path / "x.yaml"), "--events", "1"]) == 2
    assert "redaction rule 'Pod:spec.nothing'" in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()


def _pod() -> dict:
    o = obj("Pod", spec=pod_spec("plain"))
    o["spec"]["containers"][0]["args"] = ["--token", SECRET, ""]
    o["metadata"]["annotations"] = {"example.com/token": SECRET, "keep": "me"}
    o["metadata"]["labels"] = {"tier": SECRET}
    return o


RULES = ["Pod:spec.containers[*].args", "annotation:example.com/token", "Pod:label:tier",
         "ConfigMap:data.*", "ConfigMap:binaryData.*"]


def test_user_rules_apply_alike_to_dict_protobuf_and_recording() -> None:
    rules = Redactor(RULES)
    value = codec.encode(_pod())
    new, n, _ = rules.scrub_value(value, "Pod")
    as_dict = _pod()
    assert rules.scrub_dict(as_dict) == n == 5  # two args (not the empty one), annotation, label, env value
    decoded = codec.decode(new)
    for got in (decoded, as_dict):
        assert got["spec"]["containers"][0]["args"] == [REDACTED, REDACTED, ""]
        assert got["metadata"]["annotations"] == {"example.com/token": REDACTED, "keep": "me"}
        assert got["metadata"]["labels"] == {"tier": REDACTED}
    assert decoded["spec"]["containers"][0]["args"] == as_dict["spec"]["containers"][0]["args"]
    assert SECRET.encode() not in scrub_stored_value(value, "/registry/pods/ns/x", rules)
    # ConfigMap: text data and bytes (binaryData: base64 in JSON) in both forms.
    cm = obj("ConfigMap", data={"a": SECRET}, binaryData={"b": base64.b64encode(SECRET.encode()).decode()})
    new, n, _ = rules.scrub_value(codec.encode(copy.deepcopy(cm)), "ConfigMap")
    assert rules.scrub_dict(cm) == n == 2
    assert codec.decode(new)["data"] == cm["data"] == {"a": REDACTED}
    assert codec.decode(new)["binaryData"] == cm["binaryData"] == {"b": REDACTED_DATA}


def test_a_custom_resource_rule_matches_by_group_and_plural() -> None:
    rules = Redactor(["widgets.example.com:spec.env[*].value", "gadgets.example.com:spec.key"])
    w = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
         "spec": {"env": [{"name": "A", "value": SECRET}], "key": SECRET}}
    assert rules.scrub_dict(copy.deepcopy(w)) == 1  # by the plural the APIServer would guess
    other = copy.deepcopy(w) | {"apiVersion": "other.io/v1"}
    assert rules.scrub_dict(other) == 0  # another group
    # The key says the plural when it is not the guessed one.
    g = copy.deepcopy(w) | {"kind": "Thing"}
    assert rules.scrub_dict(copy.deepcopy(g), key="/registry/example.com/gadgets/ns/w") == 1
    assert rules.scrub_dict(copy.deepcopy(g), key="gadgets.example.com/ns/w") == 1
    # Through the pipeline, as JSON from etcd.
    value = json.dumps(w).encode()
    new, n, _ = rules.scrub_value(value, "Widget", key="/registry/example.com/widgets/ns/w")
    assert n == 1 and json.loads(new)["spec"] == {"env": [{"name": "A", "value": REDACTED}], "key": SECRET}


def test_runner_applies_the_rules_and_drops_unknown_fields_unless_kept() -> None:
    pod = _pod()
    pod["spec"]["$unknown"] = base64.b64encode(b"\xba\x3e\x05" + b"zqUNK").decode()  # field 999, 5 bytes
    value = codec.encode(pod)

    def run(**kw: object) -> tuple[str, dict[str, int]]:
        out = __import__("io").StringIO()

        async def go() -> Runner:
            runner = Runner(**kw)  # type: ignore[arg-type]
            runner.add_reader(MemoryReader([Entry.from_value(value, change=ChangeType.ADD,
                                                             source=SourceType.ETCD)]))
            runner.add_processor("out", JsonLinesProcessor(out))
            await runner.run()
            return runner

        runner = trio.run(go)
        return out.getvalue(), runner.counters.prefixed("safety")

    text, counts = run(redact=RULES)
    assert SECRET not in text and "zqUNK" not in text and "$unknown" not in text
    assert counts["unknown_fields.Pod"] == 1
    text, counts = run(redact=RULES, keep_unknown_fields=True)
    assert "$unknown" in text and "unknown_fields.Pod" not in counts
