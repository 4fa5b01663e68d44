"""Where the APIServer keeps each resource in etcd, and what a key says.

Keys are ``<prefix>/<segment>/<namespace>/<name>`` for namespaced resources
and ``<prefix>/<segment>/<name>`` for cluster-scoped ones. The segment is the
plural resource name for almost every built-in resource, but a few keep the
names they had before Kubernetes 1.0 (nodes under ``minions``, services under
``services/specs``, endpoints under ``services/endpoints``,
replicationcontrollers under ``controllers``) or share a storage location
across groups (ingresses under ``ingress``, events of both ``v1`` and
``events.k8s.io``). The aggregator's APIServices, CRDs and every custom
resource live under ``<group>/<plural>``. These facts come from the
APIServer's storage-path integration test data; the table below is ours.

The value's own ``apiVersion``/``kind`` names its storage version: the reader
trusts it over the key, and uses the key only to find resources and to say
which object an error is about.
"""

from __future__ import annotations

import dataclasses

from tattler_etcd.errors import BadKeyError, ConfigError

__all__ = ["BUILTIN_RESOURCES", "DEFAULT_RESOURCES", "KeyMap", "ObjectKey", "ResourceSpec", "prefix_range_end", "resolve_resource"]


@dataclasses.dataclass(frozen=True, slots=True)
class ResourceSpec:
    """One resource to read: its name, group and where it lives under the prefix.

    Attributes:
        resource: the plural name (``pods``).
        group: the API group (``""`` for the core group).
        segment: the path under the prefix (``minions`` for nodes).
        namespaced: True/False for built-in resources; None for custom
            resources, whose scope the reader learns from each key.
    """

    resource: str
    group: str
    segment: str
    namespaced: bool | None

    @property
    def name(self) -> str:
        """How the user names it: ``pods``, ``deployments``, ``foos.example.com``."""
        if not self.group or _PLAIN.get(self.resource) == self:
            return self.resource
        return f"{self.resource}.{self.group}"


def _t(group: str, namespaced: bool, *resources: str, **irregular: str) -> dict[tuple[str, str], ResourceSpec]:
    out = {}
    for r in resources:
        out[(group, r)] = ResourceSpec(r, group, irregular.get(r, r), namespaced)
    return out


NS, CLUSTER = True, False

#: The seed's four resources (the readers' and the command's default; here, with the
#: resource table, so the command's parser reads it without importing the reader).
DEFAULT_RESOURCES: tuple[str, ...] = ("pods", "nodes", "namespaces", "persistentvolumes")

#: Every built-in resource the APIServer stores, by (group, plural).
BUILTIN_RESOURCES: dict[tuple[str, str], ResourceSpec] = {
    **_t("", NS, "pods", "persistentvolumeclaims", "services", "endpoints", "replicationcontrollers",
         "configmaps", "secrets", "serviceaccounts", "events", "limitranges", "resourcequotas", "podtemplates",
         services="services/specs", endpoints="services/endpoints", replicationcontrollers="controllers"),
    **_t("", CLUSTER, "nodes", "namespaces", "persistentvolumes", nodes="minions"),
    **_t("apps", NS, "deployments", "replicasets", "statefulsets", "daemonsets", "controllerrevisions"),
    **_t("batch", NS, "jobs", "cronjobs"),
    **_t("autoscaling", NS, "horizontalpodautoscalers"),
    **_t("policy", NS, "poddisruptionbudgets"),
    **_t("networking.k8s.io", NS, "ingresses", "networkpolicies", ingresses="ingress"),
    **_t("networking.k8s.io", CLUSTER, "ingressclasses", "ipaddresses", "servicecidrs"),
    **_t("discovery.k8s.io", NS, "endpointslices"),
    **_t("events.k8s.io", NS, "events"),
    **_t("coordination.k8s.io", NS, "leases", "leasecandidates"),
    **_t("rbac.authorization.k8s.io", NS, "roles", "rolebindings"),
    **_t("rbac.authorization.k8s.io", CLUSTER, "clusterroles", "clusterrolebindings"),
    **_t("storage.k8s.io", CLUSTER, "storageclasses", "volumeattachments", "csinodes", "csidrivers",
         "volumeattributesclasses"),
    **_t("storage.k8s.io", NS, "csistoragecapacities"),
    **_t("scheduling.k8s.io", CLUSTER, "priorityclasses"),
    **_t("node.k8s.io", CLUSTER, "runtimeclasses"),
    **_t("admissionregistration.k8s.io", CLUSTER, "validatingwebhookconfigurations",
         "mutatingwebhookconfigurations", "validatingadmissionpolicies", "validatingadmissionpolicybindings",
         "mutatingadmissionpolicies", "mutatingadmissionpolicybindings"),
    **_t("certificates.k8s.io", CLUSTER, "certificatesigningrequests", "clustertrustbundles"),
    **_t("flowcontrol.apiserver.k8s.io", CLUSTER, "flowschemas", "prioritylevelconfigurations"),
    **_t("resource.k8s.io", CLUSTER, "deviceclasses", "resourceslices", "devicetaintrules"),
    **_t("resource.k8s.io", NS, "resourceclaims", "resourceclaimtemplates"),
    **_t("storagemigration.k8s.io", CLUSTER, "storageversionmigrations"),
    **_t("internal.apiserver.k8s.io", CLUSTER, "storageversions"),
    **_t("apiregistration.k8s.io", CLUSTER, "apiservices", apiservices="apiregistration.k8s.io/apiservices"),
    **_t("apiextensions.k8s.io", CLUSTER, "customresourcedefinitions",
         customresourcedefinitions="apiextensions.k8s.io/customresourcedefinitions"),
}

# A bare plural names the built-in resource; ``events`` is the core one (both
# groups share one storage location anyway).
_PLAIN: dict[str, ResourceSpec] = {}
for (_g, _r), _spec in sorted(BUILTIN_RESOURCES.items(), key=lambda kv: (kv[0][0] != "", kv[0])):
    _PLAIN.setdefault(_r, _spec)


def resolve_resource(name: str) -> ResourceSpec:
    """The :class:`ResourceSpec` for a user's resource name.

    ``pods`` (a built-in plural), ``deployments.apps`` or
    ``ingresses.networking.k8s.io`` (plural.group of a built-in), and
    ``foos.example.com`` or ``example.com/foos`` (a custom resource, stored
    as JSON under ``<group>/<plural>``).

    Raises:
        ConfigError: an empty or malformed name, or a bare plural that is
            not a built-in resource (custom resources need their group).
    """
    text = name.strip()
    if "/" in text:
        group, _, plural = text.partition("/")
    elif "." in text:
        plural, _, group = text.partition(".")
    else:
        plural, group = text, ""
    if not plural or (("." in text or "/" in text) and not group) or "/" in plural or "/" in group:
        raise ConfigError(f"resource {name!r}: give a plural (pods) or plural.group (foos.example.com)")
    if plural != plural.lower() or group != group.lower():
        raise ConfigError(f"resource {name!r}: resource names and groups are lower case")
    if not group:
        spec = _PLAIN.get(plural)
        if spec is None:
            raise ConfigError(
                f"resource {name!r}: not a built-in resource; name a custom resource as plural.group"
            )
        return spec
    builtin = BUILTIN_RESOURCES.get((group, plural))
    if builtin is not None:
        return builtin
    if group == "core" and plural in _PLAIN:
        return _PLAIN[plural]
    return ResourceSpec(plural, group, f"{group}/{plural}", None)


def prefix_range_end(prefix: bytes) -> bytes:
    """etcd's ``range_end`` for every key starting with ``prefix`` (last byte + 1)."""
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\0"  # every key


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectKey:
    """What a key says: which resource, namespace and name."""

    spec: ResourceSpec
    namespace: str | None
    name: str


class KeyMap:
    """Key prefixes of the resources read, and the reverse: key -> resource, namespace, name."""

    def __init__(self, prefix: str, specs: list[ResourceSpec]) -> None:
        p = prefix.rstrip("/")
        if not p.startswith("/") and p:
            raise ConfigError(f"--prefix {prefix!r}: an etcd key prefix starts with /")
        self.prefix = p
        self.specs = list(specs)
        self._by_prefix: dict[bytes, ResourceSpec] = {}
        for spec in self.specs:
            kp = self.key_prefix(spec)
            if kp in self._by_prefix:
                raise ConfigError(
                    f"resources {self._by_prefix[kp].name!r} and {spec.name!r} are stored under the same "
                    f"prefix {kp.decode()!r}: name it once"
                )
            self._by_prefix[kp] = spec
        #: spec -> its key prefix (``key_prefix`` builds it anew on each call).
        self._prefixes: dict[ResourceSpec, bytes] = {spec: kp for kp, spec in self._by_prefix.items()}
        for a in self._by_prefix:
            for b in self._by_prefix:
                if a != b and b.startswith(a):
                    raise ConfigError(
                        f"resource prefixes overlap: {a.decode()!r} contains {b.decode()!r}"
                    )

    def key_prefix(self, spec: ResourceSpec) -> bytes:
        """``/registry/minions/`` for nodes: every key of the resource starts with it."""
        return f"{self.prefix}/{spec.segment}/".encode()

    def parse(self, key: bytes, spec: ResourceSpec | None = None) -> ObjectKey:
        """Which object ``key`` names.

        Raises:
            BadKeyError: the key is under no resource read here, or has the
                wrong number of parts for the resource's scope (an empty
                part, a namespaced resource without a namespace...).
        """
        if spec is None:
            for kp, s in self._by_prefix.items():
                if key.startswith(kp):
                    spec = s
                    break
            else:
                raise BadKeyError(f"{_show(key)}: not under any resource read here")
        parts = self._parts(key, spec)
        if len(parts) == 2:
            return ObjectKey(spec, parts[0], parts[1])
        return ObjectKey(spec, None, parts[0])

    def check(self, key: bytes, spec: ResourceSpec) -> None:
        """:meth:`parse` without its result: whether ``key`` names an object of ``spec`` (the list's per-key check).

        Raises:
            BadKeyError: as :meth:`parse`.
        """
        self._parts(key, spec)

    def _parts(self, key: bytes, spec: ResourceSpec) -> list[str]:
        kp = self._prefixes.get(spec)
        if kp is None:
            kp = self.key_prefix(spec)
        if not key.startswith(kp):
            raise BadKeyError(f"{_show(key)}: not under {kp.decode()}")
        try:
            rest = key[len(kp):].decode("utf-8")
        except UnicodeDecodeError:
            raise BadKeyError(f"{_show(key)}: not UTF-8") from None
        parts = rest.split("/")
        if "" in parts or len(parts) > 2:
            raise BadKeyError(f"{_show(key)}: not <namespace>/<name> or <name> under {kp.decode()}")
        if spec.namespaced is True and len(parts) != 2:
            raise BadKeyError(f"{_show(key)}: {spec.name} are namespaced; the key has no namespace")
        if spec.namespaced is False and len(parts) != 1:
            raise BadKeyError(f"{_show(key)}: {spec.name} are cluster-scoped; the key has a namespace")
        return parts


def _show(key: bytes) -> str:
    """A key as text for messages (keys are ASCII in practice; never a value)."""
    return key.decode("utf-8", "backslashreplace")[:512]
