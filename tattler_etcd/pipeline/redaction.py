"""The redaction rules: what is secret in which kind, and how it is scrubbed in every form.

One module, imported by the safety stage (``pipeline/safety.py``) and by the
recorder (``replay/_redact.py``), so a recording never holds what the pipeline
would have hidden, and both follow the same rules (see ``docs/safety.md``).

Defaults, derived from the schema (``codec.kind_paths``), never listed by hand:

* every path of a kind that reaches a ``core/v1 EnvVar.value``: the pod specs
  of every workload kind and pod template, and any other type holding env
  lists (``settings.k8s.io/v1alpha1`` PodPreset ``spec.env``);
* every ``RawExtension`` (``apps`` ControllerRevision ``data``, a
  StatefulSet's or DaemonSet's template in history; device parameters):
  its bytes hold JSON or a nested ``k8s\\0`` object. A nested object is
  judged by its own kind (a Secret is redacted whole); JSON is scrubbed by the
  kind it names and, whatever it names, every ``env[].value`` in it; bytes
  that are neither are replaced whole by the JSON string ``"REDACTED"``;
* ``Secret`` ``data`` and ``stringData`` values;
* the ``kubectl.kubernetes.io/last-applied-configuration`` annotation, judged
  by the object's own kind: on a Secret replaced whole; on a kind with rules
  the JSON inside is scrubbed with that kind's rules, and replaced whole when
  it is not a JSON object or names another kind; on a kind without rules
  left as it is;
* fields the codec does not know (unknown protobuf tags, ``"$unknown"`` in
  decoded dicts) are dropped, unless ``keep_unknown_fields``.

Users add rules (:func:`parse_rule`): ``Kind:path`` (``Pod:spec.containers[*].args``,
``ConfigMap:data.*``), ``plural.group:path`` for custom resources
(``widgets.example.com:spec.env[*].value``), ``annotation:NAME`` and
``label:NAME``, optionally kind-scoped (``Pod:annotation:NAME``).

A string value becomes :data:`REDACTED`; a bytes value ``b"REDACTED"``
(:data:`REDACTED_DATA` in JSON, its base64). Empty values stay empty: nothing
to hide, and protobuf stores an empty value that JSON omits.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from tattler_etcd import codec
from tattler_etcd.errors import ConfigError, TattlerError, UnsafeObjectError

__all__ = [
    "ENV_VAR",
    "LAST_APPLIED",
    "LAST_APPLIED_ANNOTATION",
    "REDACTED",
    "REDACTED_DATA",
    "Redactor",
    "Rule",
    "default_redactor",
    "drop_unknown_keys",
    "parse_rule",
    "read_rules_file",
]

Path = tuple[str, ...]

#: What a redacted string value becomes.
REDACTED: Final = "REDACTED"
#: What a redacted bytes value (``Secret.data``) becomes in JSON: base64 of ``b"REDACTED"``.
REDACTED_DATA: Final = "UkVEQUNURUQ="
_REDACTED_BYTES: Final = b"REDACTED"
#: What a RawExtension that cannot be inspected becomes (a JSON string, so the object still decodes).
_REDACTED_RAW: Final = b'"REDACTED"'

#: The annotation ``kubectl apply`` keeps the whole last applied object in.
LAST_APPLIED_ANNOTATION: Final = "kubectl.kubernetes.io/last-applied-configuration"
#: Its path (an annotation key holds dots and a slash, hence tuples, not dotted strings).
LAST_APPLIED: Final = ("metadata", "annotations", LAST_APPLIED_ANNOTATION)
_LAST_APPLIED_PATHS: Final = (LAST_APPLIED,)
_LAST_APPLIED_BYTES: Final = LAST_APPLIED_ANNOTATION.encode()
#: Its prefix: ``bytes.find`` looks for it in a 3 KB object ~4x faster than for
#: the whole name (0.5 vs 2.1 us), and most objects have neither.
_LAST_APPLIED_PREFIX: Final = LAST_APPLIED_ANNOTATION.partition("/")[0].encode() + b"/"

#: The field every env value lives in: (message, JSON name).
ENV_VAR: Final = ("k8s.io.api.core.v1.EnvVar", "value")
_SECRET: Final = "Secret"
#: Leaf kinds in the dict form: text, bytes (base64 in JSON), a RawExtension.
_S, _B, _R = "s", "b", "r"
#: How deep objects may nest inside each other (annotations, RawExtensions).
_MAX_DEPTH: Final = 4
#: What a user's path may end at (leaf types from ``codec.leaf_types``).
_TEXT_LEAVES: Final = frozenset({"string", "bytes", "quantity", "intorstring"})


# -- user rules ----------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One user rule, parsed; ``text`` is what the user wrote (error messages name it)."""

    text: str
    #: A built-in kind name, or None: every kind (annotation and label rules only).
    kind: str | None = None
    #: ``(plural, group)`` of a custom resource.
    resource: tuple[str, str] | None = None
    path: Path | None = None
    annotation: str | None = None
    label: str | None = None


_CR = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")
_KIND = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_SEGMENT = re.compile(r"""\.?(?:([^.\[\]"']+)|\[(\*|\d+)\]|\["([^"]*)"\]|\['([^']*)'\])""")


def _parse_path(text: str, rule: str) -> Path:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        m = _SEGMENT.match(text, pos)
        if m is None or m.end() == pos or (pos == 0 and text.startswith(".")):
            raise ConfigError(f"redaction rule {rule!r}: cannot read the path at {text[pos:]!r} "
                              "(write it as spec.containers[*].env[*].value, data.*, metadata.labels[\"a/b\"])")
        out.append(next(g for g in m.groups()[1:] if g is not None) if m.group(1) is None else m.group(1))
        pos = m.end()
    if not out:
        raise ConfigError(f"redaction rule {rule!r}: no path")
    return tuple(out)


def parse_rule(text: str) -> Rule:
    """A rule from its text, checked against the schema.

    Forms: ``Kind:path``, ``plural.group:path`` (custom resources, stored as
    JSON: any path), ``annotation:NAME``, ``label:NAME``, ``Kind:annotation:NAME``,
    ``Kind:label:NAME``. Paths are dotted JSON names; ``[*]`` or ``.*`` is
    every element or value, ``[N]`` one element, ``["a.b/c"]`` a key with dots.

    Raises:
        ConfigError: naming the rule: it names no known kind, its path does
            not parse, or (built-in kinds) the path reaches no text value in
            any version of the kind.
    """
    if not isinstance(text, str):
        raise ConfigError(f"redaction rule {text!r}: not a string")
    rule = text.strip()
    head, sep, rest = rule.partition(":")
    if not sep or not rest:
        raise ConfigError(f"redaction rule {text!r}: write KIND:PATH, annotation:NAME or label:NAME")
    if head in ("annotation", "label"):
        return _named(text, None, None, head, rest)
    kind: str | None = None
    resource: tuple[str, str] | None = None
    if _KIND.match(head):
        if head not in codec.kind_names():
            raise ConfigError(f"redaction rule {text!r}: {head!r} is no kind we know "
                              "(built-in kinds by name, e.g. Pod; custom resources as plural.group)")
        kind = head
    elif _CR.match(head):
        plural, _, group = head.partition(".")
        resource = (plural, group)
    else:
        raise ConfigError(f"redaction rule {text!r}: {head!r} is neither a kind (Pod) nor plural.group")
    what, sep2, name = rest.partition(":")
    if sep2 and what in ("annotation", "label"):
        return _named(text, kind, resource, what, name)
    path = _parse_path(rest, text)
    if kind is not None:
        reached = codec.leaf_types(kind, path)
        if not reached & _TEXT_LEAVES:
            found = ", ".join(sorted(reached)) or "nothing"
            raise ConfigError(f"redaction rule {text!r}: the path reaches no text value in {kind} "
                              f"(it reaches {found})")
    return Rule(text=text, kind=kind, resource=resource, path=path)


def _named(text: str, kind: str | None, resource: tuple[str, str] | None, what: str, name: str) -> Rule:
    name = name.strip()
    if not name or any(c.isspace() for c in name):
        raise ConfigError(f"redaction rule {text!r}: give an {what} name")
    if what == "annotation":
        return Rule(text=text, kind=kind, resource=resource, annotation=name)
    return Rule(text=text, kind=kind, resource=resource, label=name)


def read_rules_file(path: str | os.PathLike[str]) -> list[str]:
    """The rules in a file: a YAML list (or a mapping with a ``redact`` list), or one rule a line.

    In a text file, empty lines and lines starting with ``#`` are skipped.

    Raises:
        ConfigError: the file cannot be read, or holds something else.
    """
    import yaml

    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--redact-file {name}: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = None
    if isinstance(doc, dict):
        doc = doc.get("redact")
        if not isinstance(doc, list):
            raise ConfigError(f"--redact-file {name}: a mapping needs a 'redact' list of rules")
    if isinstance(doc, list):
        if not all(isinstance(r, str) for r in doc):
            raise ConfigError(f"--redact-file {name}: every rule must be a string")
        return list(doc)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


# -- compiled rules per kind ---------------------------------------------------------------


class _Unsafe(Exception):
    """The object's shape is not what the rules expect; carries where (a path, never a value)."""


@dataclass(frozen=True)
class _KindRules:
    kind: str
    #: Leaves replaced (protobuf walker paths); includes annotation and label keys.
    values: tuple[Path, ...]
    #: RawExtensions scrubbed by what they hold.
    raw: tuple[Path, ...]
    #: The dict walker's trie: elem -> (leaf kind or None, child trie).
    trie: dict[str, Any]
    secret: bool

    @property
    def has_rules(self) -> bool:
        return bool(self.values or self.raw)


def _guess_plural(kind: str) -> str:
    """The plural the APIServer guesses for a kind (``UnsafeGuessKindToResource``)."""
    k = kind.lower()
    if k.endswith("s"):
        return k + "es"
    if k.endswith("y") and len(k) > 1 and k[-2] not in "aeiou":
        return k[:-1] + "ies"
    return k + "s"


def _resource_of(kind: str, api_version: str, key: str) -> tuple[str, str]:
    """(plural, group) of an object: from its key when it says, else the guessed plural."""
    group = api_version.rpartition("/")[0]
    if key and group:
        parts = key.split("/")
        if group in parts:  # etcd: /registry/<group>/<plural>/...
            i = parts.index(group)
            if i + 1 < len(parts):
                return parts[i + 1], group
        first = parts[0]  # the APIServer reader: <plural>.<group>/...
        if first.endswith("." + group):
            return first[: -len(group) - 1], group
    return _guess_plural(kind), group


def _build_trie(kind: str, entries: Iterable[tuple[Path, str]]) -> dict[str, Any]:
    """elem -> [leaf kind or None, children, what a "*" steps into ("rep", "map" or None: either)]."""
    root: dict[str, Any] = {}
    for path, leaf in entries:
        node = root
        labels = codec.star_labels(kind, path)
        for i, elem in enumerate(path):
            slot = node.get(elem)
            if slot is None:
                slot = node[elem] = [None, {}, labels[i]]
            # At the end: raw wins over text (it scrubs inside), bytes over text (a base64 leaf).
            if i == len(path) - 1 and (slot[0] is None or leaf == _R or (leaf == _B and slot[0] == _S)):
                slot[0] = leaf
            node = slot[1]
    return root


class Redactor:
    """The rules, compiled per kind on first use, and the scrubbing itself (dict and protobuf forms).

    Args:
        rules: user rules (texts or :class:`Rule` s) on top of the defaults.
        keep_unknown_fields: keep fields the codec does not know (default:
            dropped, see the module docstring).

    Raises:
        ConfigError: a rule does not parse or cannot match (naming it).
    """

    def __init__(self, rules: Iterable[str | Rule] = (), *, keep_unknown_fields: bool = False) -> None:
        if isinstance(rules, str):
            raise ConfigError("redact: give a list of rules, not one string")
        self.rules: tuple[Rule, ...] = tuple(r if isinstance(r, Rule) else parse_rule(r) for r in rules)
        self.keep_unknown_fields = keep_unknown_fields
        self._cache: dict[Any, _KindRules] = {}
        #: kind -> its rules, when no rule depends on more than the kind (the common, fast case).
        self._by_kind: dict[str, _KindRules] = {}
        self._has_cr_rules = any(r.resource is not None for r in self.rules)

    # -- what applies where ----------------------------------------------------------

    def for_kind(self, kind: str, api_version: str = "", key: str = "") -> _KindRules:
        """The compiled rules of ``kind`` (custom-resource rules matched by group and plural)."""
        resource = _resource_of(kind, api_version, key) if self._has_cr_rules and api_version else None
        ck = (kind, resource)
        hit = self._cache.get(ck)
        if hit is None:
            hit = self._compile(kind, resource)
            if len(self._cache) < 4096:  # kinds come from the data
                self._cache[ck] = hit
                if resource is None:
                    self._by_kind[kind] = hit
        return hit

    def _compile(self, kind: str, resource: tuple[str, str] | None) -> _KindRules:
        leaves: dict[Path, str] = {}
        for p in codec.kind_paths(kind, message=ENV_VAR[0], field=ENV_VAR[1]):
            leaves[p] = _S
        secret = kind == _SECRET
        if secret:
            leaves[("data", "*")] = _B
            leaves[("stringData", "*")] = _S
        for r in self.rules:
            if r.kind is not None and r.kind != kind:
                continue
            if r.resource is not None and r.resource != resource:
                continue
            if r.path is not None:
                types = codec.leaf_types(kind, r.path) if r.resource is None else frozenset()
                leaves[r.path] = _B if ("bytes" in types and "string" not in types) else _S
            elif r.annotation is not None:
                leaves[("metadata", "annotations", r.annotation)] = _S
            elif r.label is not None:
                leaves[("metadata", "labels", r.label)] = _S
        raw = codec.kind_paths(kind, special="rawextension")
        entries = [*leaves.items(), *((p, _R) for p in raw)]
        return _KindRules(kind=kind, values=tuple(leaves), raw=raw, trie=_build_trie(kind, entries), secret=secret)

    def paths_for(self, kind: str) -> tuple[Path, ...]:
        """The value paths redacted in an object of ``kind`` (JSON names, ``"*"`` = every element).

        Neither the RawExtensions (scrubbed by what they hold) nor the
        last-applied annotation (scrubbed as JSON) are among them.
        """
        return self.for_kind(kind).values

    def raw_paths_for(self, kind: str) -> tuple[Path, ...]:
        """The RawExtension paths of ``kind`` (scrubbed by what they hold)."""
        return self.for_kind(kind).raw

    # -- dict form ---------------------------------------------------------------------

    def scrub_dict(self, obj: dict[str, Any], *, kind: str | None = None, key: str = "",
                   drop_unknown: bool | None = None) -> int:
        """Redact, in place, a JSON-shaped object; how many values were redacted.

        ``kind`` defaults to ``obj["kind"]``. A list kind (``PodList``...) has
        each of its ``items`` scrubbed as the item kind. ``drop_unknown``
        (default: unless the redactor keeps them) removes every ``"$unknown"``
        key the codec left; removed fields count as redacted values.

        Raises:
            UnsafeObjectError: the object does not have the shape the rules
                expect. The message names the path, never a value.
        """
        if not isinstance(obj, dict):
            raise UnsafeObjectError(f"not a JSON object but {type(obj).__name__}")
        if kind is None:
            kind = obj.get("kind")
            if not isinstance(kind, str):
                raise UnsafeObjectError("no kind")
        if drop_unknown is None:
            drop_unknown = not self.keep_unknown_fields
        try:
            n = self._scrub_object(obj, kind, key, 0)
        except _Unsafe as exc:
            raise UnsafeObjectError(f"unexpected shape at {exc}") from None
        except RecursionError:
            raise UnsafeObjectError("nested too deep") from None
        if drop_unknown:
            n += drop_unknown_keys(obj)
        return n

    def _scrub_object(self, obj: dict[str, Any], kind: str, key: str, depth: int) -> int:
        api_version = obj.get("apiVersion")
        kr = self.for_kind(kind, api_version if isinstance(api_version, str) else "", key)
        n = _walk(obj, kr.trie, (), self, depth) if kr.trie else 0
        if kind.endswith("List") and "items" in obj and not kr.has_rules:
            items = obj["items"]
            if items is not None:
                if type(items) is not list:
                    raise _Unsafe("items")
                item_kind = kind[:-4]
                for i, item in enumerate(items):
                    if type(item) is not dict:
                        raise _Unsafe(f"items[{i}]")
                    ik = item.get("kind")
                    n += self._scrub_object(item, ik if isinstance(ik, str) and ik else item_kind, "", depth)
        meta = obj.get("metadata")
        if meta is not None:
            if type(meta) is not dict:
                raise _Unsafe("metadata")
            annotations = meta.get("annotations")
            if annotations is not None:
                if type(annotations) is not dict:
                    raise _Unsafe("metadata.annotations")
                applied = annotations.get(LAST_APPLIED_ANNOTATION)
                if applied is not None:
                    new, changed = self._scrub_last_applied(applied, kr, depth)
                    if changed:
                        # Counted as one value, as the codec counts it on protobuf objects.
                        annotations[LAST_APPLIED_ANNOTATION] = new
                        n += 1
        return n

    def _scrub_last_applied(self, text: Any, kr: _KindRules, depth: int) -> tuple[Any, int]:
        """The annotation's text scrubbed by the object's own kind's rules, and how many values changed."""
        if not isinstance(text, str):
            return REDACTED, 1
        if text == "" or not (kr.has_rules or kr.secret):
            return text, 0
        if kr.secret or depth >= _MAX_DEPTH:
            return REDACTED, 1
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            return REDACTED, 1
        if type(doc) is not dict:
            return REDACTED, 1
        claimed = doc.get("kind")
        if claimed is not None and claimed != kr.kind:
            # Another kind's shape: the object's rules cannot judge it.
            return REDACTED, 1
        try:
            n = self._scrub_object(doc, kr.kind, "", depth + 1)
        except (_Unsafe, RecursionError):
            return REDACTED, 1
        if n == 0:
            return text, 0
        # kubectl writes compact JSON with a trailing newline; keep that form.
        out = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        return (out + "\n" if text.endswith("\n") else out), n

    def _scrub_embedded(self, doc: Any, depth: int) -> tuple[Any, int]:
        """A RawExtension's JSON (dict form): judged by the kind it names, and every env value in it."""
        if type(doc) is dict:
            kind = doc.get("kind")
            if isinstance(kind, str) and kind:
                if kind == _SECRET or depth >= _MAX_DEPTH:
                    return REDACTED, 1
                try:
                    n = self._scrub_object(doc, kind, "", depth + 1)
                except _Unsafe:
                    return REDACTED, 1
                return doc, n + _scrub_env_anywhere(doc)
            return doc, _scrub_env_anywhere(doc)
        if type(doc) is list:
            return doc, _scrub_env_anywhere(doc)
        return doc, 0

    # -- protobuf form -----------------------------------------------------------------

    def scrub_parsed(self, parsed: Any, kind: str, value: bytes, depth: int = 0) -> tuple[int, bool, bytes]:
        """Redact a parsed protobuf object (``value``: its bytes): (values changed, unknown dropped, bytes out).

        The bytes out are ``value`` itself when nothing changed. Unknown fields:
        the codec scans the stored bytes in C first (nearly every object has
        none, and then nothing more is done); otherwise they are discarded in
        C before the passes, and whether there were any is told by lengths:
        with nothing redacted, by the message's size against the stored one;
        with env-like leaves replaced, by the serialized length against the
        stored one plus what the replacements added. When the lengths cannot
        tell (another pass changed something, a length prefix grew) the stored
        value is parsed again to ask.
        """
        # None: the codec's scan of the bytes found no unknown field (the usual case).
        size = None if self.keep_unknown_fields else codec.discard_unknown(parsed)
        kr = self._by_kind.get(kind) if not self._has_cr_rules else None
        if kr is None:
            kr = self.for_kind(kind)
        # Replacing by a constant: inlined in the walker, which adds up the bytes it adds.
        leaves = codec.Replace(REDACTED, _REDACTED_BYTES)
        n = codec.redact_parsed(parsed, kr.values, leaves) if kr.values else 0
        exact = True
        if kr.raw:
            m = codec.redact_parsed(parsed, kr.raw, lambda raw: self._scrub_raw(raw, depth))
            exact = not m
            n += m
        # The annotation needs its own pass (its leaf is scrubbed as JSON, not
        # replaced), which parses the object when the codec rewrote the env
        # values in the bytes. A map key is stored verbatim: when its name is not
        # in the bytes the annotation is not there, and the scan (~0.5 us for
        # 3 KB) spares the parse and the serialization.
        if (kr.has_rules or kr.secret) and _LAST_APPLIED_PREFIX in value and _LAST_APPLIED_BYTES in value:
            m = codec.redact_parsed(parsed, _LAST_APPLIED_PATHS, lambda text: self._applied_leaf(text, kr, depth))
            exact = exact and not m
            n += m
        if size is None:
            return n, False, (codec.to_bytes(parsed) if n else value)
        if not n:
            dropped = codec.size_changed(parsed, size)
            return 0, dropped, (codec.to_bytes(parsed) if dropped else value)
        new = codec.to_bytes(parsed)
        if exact and len(new) - len(value) == leaves.delta:
            return n, False, new
        return n, _had_unknown(value), new

    def _applied_leaf(self, v: Any, kr: _KindRules, depth: int) -> Any:
        if isinstance(v, (bytes, bytearray)):
            new, changed = self._scrub_last_applied(bytes(v).decode("utf-8", "replace"), kr, depth)
            return new.encode("utf-8") if changed else v
        new, changed = self._scrub_last_applied(v, kr, depth)
        return new if changed else v

    def _scrub_raw(self, leaf: Any, depth: int) -> Any:
        """A RawExtension's bytes scrubbed: a nested object by its kind, JSON by what it holds, else whole."""
        if not isinstance(leaf, (bytes, bytearray)) or not leaf:
            return leaf
        raw = bytes(leaf)
        if depth >= _MAX_DEPTH:
            return _REDACTED_RAW
        if raw[:4] == codec.MAGIC:
            try:
                parsed = codec.parse(raw)
                if parsed.kind == _SECRET:
                    return _REDACTED_RAW
                _n, _dropped, new = self.scrub_parsed(parsed, parsed.kind, raw, depth + 1)
                return new
            except TattlerError:
                return _REDACTED_RAW
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):
            return _REDACTED_RAW
        new, n = self._scrub_embedded(doc, depth)
        if not n:
            return raw
        return json.dumps(new, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def scrub_value(self, value: bytes, kind: str, *, key: str = "") -> tuple[bytes, int, bool]:
        """Redact protobuf or JSON ``value`` (an object of ``kind``): (new bytes, values changed, unknown dropped).

        Protobuf is edited without building the dict (``codec.parse``); a
        list kind and a JSON value go through the dict. The bytes come back
        unchanged when nothing changed.

        Raises:
            UnsafeObjectError: the value cannot be walked or decoded; chained to the codec's error.
        """
        try:
            if value[:4] == codec.MAGIC and not (kind.endswith("List") and kind not in codec.kind_names()):
                parsed = codec.parse(value)
                n, dropped, new = self.scrub_parsed(parsed, kind, value)
                return new, n, dropped
            obj = codec.decode(value)
        except TattlerError as exc:
            raise UnsafeObjectError(f"cannot walk the value: {type(exc).__name__}: {str(exc)[:200]}") from exc
        unknown = 0 if self.keep_unknown_fields else drop_unknown_keys(obj)
        n = self.scrub_dict(obj, kind=kind, key=key, drop_unknown=False)
        if not (n or unknown):
            return value, 0, False
        if codec.is_json(value):
            text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
            return (text + b"\n" if value.endswith(b"\n") else text), n, bool(unknown)
        try:
            return codec.encode(obj), n, bool(unknown)
        except TattlerError as exc:
            raise UnsafeObjectError(f"cannot write the value back: {type(exc).__name__}") from exc


def _had_unknown(value: bytes) -> bool:
    """Whether the stored ``value`` held unknown fields (parsed again: the slow, exact way)."""
    parsed = codec.parse(value)
    size = codec.discard_unknown(parsed)
    return size is not None and codec.size_changed(parsed, size)


def _redact_leaf(v: Any) -> Any:
    if type(v) is str:  # the common case first: this runs for every env value
        return REDACTED if v else v
    if isinstance(v, (bytes, bytearray)):
        return _REDACTED_BYTES if v else v
    if isinstance(v, str):
        return REDACTED if v else v
    return v


def _redact_json_leaf(v: Any, leaf: str) -> tuple[Any, int]:
    """A leaf in the dict form: text or a number becomes REDACTED, bytes REDACTED_DATA; lists and maps of them, each."""
    t = type(v)
    if t is str or t is int or t is float or t is bool:
        if not v and t is str:
            return v, 0
        return (REDACTED_DATA if leaf == _B else REDACTED), 1
    if t is list:
        n = 0
        for i, x in enumerate(v):
            if x is not None and x != "":
                new, k = _redact_json_leaf(x, leaf)
                v[i] = new
                n += k
        return v, n
    if t is dict:
        n = 0
        for k2, x in list(v.items()):
            if x is not None and x != "":
                new, k = _redact_json_leaf(x, leaf)
                v[k2] = new
                n += k
        return v, n
    return REDACTED, 1  # something else where a value was expected: hidden whole


def _walk(node: Any, trie: dict[str, Any], where: Path, rules: Redactor, depth: int) -> int:
    n = 0
    for elem, (leaf, children, label) in trie.items():
        if elem == "*":
            if type(node) is dict and label != "rep":
                items: Iterable[tuple[Any, Any]] = list(node.items())
            elif type(node) is list and label != "map":
                items = list(enumerate(node))
            else:
                raise _Unsafe(_show(where))
        elif type(node) is dict:
            v = node.get(elem)
            if v is None:
                continue
            items = ((elem, v),)
        elif type(node) is list and elem.isdigit():
            i = int(elem)
            if i >= len(node):
                continue
            items = ((i, node[i]),)
        else:
            raise _Unsafe(_show(where))
        for k, v in items:
            if v is None:
                continue
            if leaf is not None:
                if leaf == _R:
                    new, c = rules._scrub_embedded(v, depth)
                else:
                    new, c = _redact_json_leaf(v, leaf)
                if c:
                    node[k] = new
                    n += c
                    v = new
            if children:
                if type(v) is not dict and type(v) is not list:
                    if leaf is not None:
                        continue  # a leaf here already, nothing below it
                    raise _Unsafe(_show((*where, elem)))
                n += _walk(v, children, (*where, str(elem)), rules, depth)
    return n


def _show(where: Path) -> str:
    """A path as the messages name places: ``spec.containers[].env[]``."""
    out = ""
    for elem in where:
        out += "[]" if elem == "*" else (f".{elem}" if out else elem)
    return out or "(top)"


def _scrub_env_anywhere(doc: Any) -> int:
    """Every ``env[].value`` anywhere in a JSON tree (a template in a RawExtension, whatever its shape)."""
    n = 0
    stack = [doc]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            env = node.get("env")
            if type(env) is list:
                for var in env:
                    if type(var) is dict:
                        value = var.get("value")
                        if value is not None and value != "":
                            var["value"] = REDACTED
                            n += 1
            stack.extend(v for v in node.values() if type(v) is dict or type(v) is list)
        elif type(node) is list:
            stack.extend(v for v in node if type(v) is dict or type(v) is list)
    return n


def drop_unknown_keys(doc: Any) -> int:
    """Remove every ``"$unknown"`` key (what the codec keeps unknown protobuf fields under); how many."""
    n = 0
    key = codec.UNKNOWN_KEY
    stack = [doc]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            if key in node:
                del node[key]
                n += 1
            stack.extend(v for v in node.values() if type(v) is dict or type(v) is list)
        elif type(node) is list:
            stack.extend(v for v in node if type(v) is dict or type(v) is list)
    return n


_DEFAULT: Redactor | None = None


def default_redactor() -> Redactor:
    """The rules with no user additions, unknown fields dropped (shared, compiled once per kind)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Redactor()
    return _DEFAULT

