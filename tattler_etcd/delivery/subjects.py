"""Where an entry goes in NATS: its resource name, subject, KV key and change id.

Subjects and KV keys are made of tokens separated by ``.``; a KV key may only
hold ``[-/_=.a-zA-Z0-9]`` and a subject token must not hold ``.``, ``*``,
``>`` or white space. Kubernetes names hold dots (``kube-proxy.1a2b``), custom
resources' names hold their group (``widgets.example.com``) and a few kinds
allow more. So every token is written with one escaping, the same in the
stream's subjects and the bucket's keys:

* ``A-Z a-z 0-9 -`` stand for themselves;
* every other character is written as ``=XX`` for each byte of its UTF-8 form
  (upper-case hex): ``.`` is ``=2E``, ``_`` is ``=5F``, ``=`` is ``=3D``;
* a namespace token ``_`` means cluster-scoped (no namespace); an escaped
  ``_`` is ``=5F``, so the two never meet;
* an empty token is written ``=`` (no escape is ``=`` alone).

:func:`escape_token` and :func:`unescape_token` are exact inverses.

One object's KV key is ``<resource>.<namespace or _>.<name>``; its subject in
the stream is ``<prefix>.<key>`` (prefix ``tattler``). ``<resource>`` is the
plural resource name the CLI's ``--resources`` uses: ``pods``,
``deployments`` for built-in kinds, ``<plural>.<group>`` for the others
(``widgets.example.com``). An entry carries its ``kind`` and ``apiVersion``,
not its resource, so the plural is Kubernetes' own guess from the kind (the
lower-case kind plus ``s``, ``es`` after an ``s``, ``ies`` for a final ``y``),
right for every built-in kind but ``Endpoints`` (kept as it is). A custom
resource whose CRD declares an irregular plural is filed under the guess.
"""

from __future__ import annotations

import functools
import re

from tattler_etcd.data import ChangeType, Entry

__all__ = [
    "BUILTIN_GROUPS",
    "change_id",
    "escape_token",
    "kv_key",
    "resource_name",
    "resource_token",
    "subject",
    "unescape_token",
]

#: The API groups of the built-in resources: their resources are named by the bare plural.
BUILTIN_GROUPS = frozenset({
    "", "admissionregistration.k8s.io", "apiextensions.k8s.io", "apiregistration.k8s.io", "apps",
    "autoscaling", "batch", "certificates.k8s.io", "coordination.k8s.io", "discovery.k8s.io",
    "events.k8s.io", "flowcontrol.apiserver.k8s.io", "internal.apiserver.k8s.io", "networking.k8s.io",
    "node.k8s.io", "policy", "rbac.authorization.k8s.io", "resource.k8s.io", "scheduling.k8s.io",
    "storage.k8s.io", "storagemigration.k8s.io",
})

#: Kinds whose plural is not Kubernetes' guess.
_IRREGULAR = {"Endpoints": "endpoints"}

_PLAIN = re.compile(r"[A-Za-z0-9-]*")
_ESCAPE = re.compile(r"[^A-Za-z0-9-]+")
_HEX = re.compile(r"(?:=[0-9A-F]{2})+")


def _escape_run(match: re.Match[str]) -> str:
    return "".join(f"={b:02X}" for b in match.group().encode("utf-8"))


def escape_token(text: str) -> str:
    """``text`` as one subject token / KV key token (see the module docstring)."""
    if not text:
        return "="
    if _PLAIN.fullmatch(text):
        return text
    return _ESCAPE.sub(_escape_run, text)


def unescape_token(token: str) -> str:
    """The text :func:`escape_token` wrote as ``token``.

    Raises:
        ValueError: ``token`` is not something :func:`escape_token` writes.
    """
    if token == "=":
        return ""
    if _PLAIN.fullmatch(token):
        return token
    out: list[str] = []
    pos = 0
    for m in _HEX.finditer(token):
        plain = token[pos:m.start()]
        if not _PLAIN.fullmatch(plain):
            raise ValueError(f"not an escaped token: {token!r}")
        out.append(plain)
        out.append(bytes.fromhex(m.group().replace("=", "")).decode("utf-8"))
        pos = m.end()
    if not _PLAIN.fullmatch(token[pos:]):
        raise ValueError(f"not an escaped token: {token!r}")
    out.append(token[pos:])
    return "".join(out)


def resource_name(api_version: str, kind: str) -> str:
    """The resource name for a kind: ``pods``, ``deployments``, ``widgets.example.com``."""
    group = api_version.rpartition("/")[0]
    plural = _IRREGULAR.get(kind)
    if plural is None:
        lower = kind.lower()
        if lower.endswith("s"):
            plural = lower + "es"
        elif lower.endswith("y"):
            plural = lower[:-1] + "ies"
        else:
            plural = lower + "s"
    return plural if group in BUILTIN_GROUPS else f"{plural}.{group}"


def resource_token(resource: str) -> str:
    """The escaped token for a resource as a user names it (``deployments.apps`` is ``deployments``)."""
    plural, dot, group = resource.partition(".")
    if dot and group in BUILTIN_GROUPS:
        resource = plural
    return escape_token(resource)


@functools.lru_cache(maxsize=1024)
def _resource_token_of(api_version: str, kind: str) -> str:
    return escape_token(resource_name(api_version, kind))


def kv_key(entry: Entry) -> str:
    """The entry's object's key in the state bucket: ``<resource>.<namespace or _>.<name>``."""
    ns = escape_token(entry.namespace) if entry.namespace else "_"
    return f"{_resource_token_of(entry.api_version, entry.kind)}.{ns}.{escape_token(entry.name)}"


def subject(entry: Entry, prefix: str = "tattler") -> str:
    """The entry's subject in the stream: ``<prefix>.<kv key>``."""
    return f"{prefix}.{kv_key(entry)}"


def change_id(entry: Entry) -> str:
    """A stable id of the change (``Nats-Msg-Id``): the same on every replica that reads it.

    ``<uid>@<resourceVersion>``: one state of one object, however it was read
    (listed, watched, relisted); a DELETE adds ``/delete``, since the last
    state of a deleted object may carry the resourceVersion it was last seen at.
    """
    base = f"{entry.uid}@{entry.resource_version}"
    return base + "/delete" if entry.change is ChangeType.DELETE else base
