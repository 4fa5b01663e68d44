"""Resource names as kubectl takes them: plural, singular, short name or kind, any case.

``po``, ``pod``, ``pods``, ``Pod`` and ``PODS`` all mean ``pods``;
``deploy``, ``Deployment.apps`` and ``deployments.apps`` mean ``deployments``.
A word no resource has gets a "did you mean" from the closest known words.
Custom resources are named ``plural.group`` (or ``group/plural``) and pass
through as given (lower-cased): only the server knows their other names.

The short names and kinds are kubectl's (``kubectl api-resources``) for the
built-in resources the readers know (:data:`BUILTIN_RESOURCES`); a test checks
that every kind here is one the codec knows and every built-in has a kind.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from tattler_etcd.errors import ConfigError
from tattler_etcd.readers.etcd.keys import BUILTIN_RESOURCES, resolve_resource

__all__ = ["KINDS", "SHORT_NAMES", "canonical_resource", "canonical_resources"]

#: The kind of each built-in plural (kubectl's KIND column).
KINDS: dict[str, str] = {
    "pods": "Pod", "persistentvolumeclaims": "PersistentVolumeClaim", "services": "Service",
    "endpoints": "Endpoints", "replicationcontrollers": "ReplicationController", "configmaps": "ConfigMap",
    "secrets": "Secret", "serviceaccounts": "ServiceAccount", "events": "Event", "limitranges": "LimitRange",
    "resourcequotas": "ResourceQuota", "podtemplates": "PodTemplate", "nodes": "Node", "namespaces": "Namespace",
    "persistentvolumes": "PersistentVolume", "deployments": "Deployment", "replicasets": "ReplicaSet",
    "statefulsets": "StatefulSet", "daemonsets": "DaemonSet", "controllerrevisions": "ControllerRevision",
    "jobs": "Job", "cronjobs": "CronJob", "horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "poddisruptionbudgets": "PodDisruptionBudget", "ingresses": "Ingress", "networkpolicies": "NetworkPolicy",
    "ingressclasses": "IngressClass", "ipaddresses": "IPAddress", "servicecidrs": "ServiceCIDR",
    "endpointslices": "EndpointSlice", "leases": "Lease", "leasecandidates": "LeaseCandidate", "roles": "Role",
    "rolebindings": "RoleBinding", "clusterroles": "ClusterRole", "clusterrolebindings": "ClusterRoleBinding",
    "storageclasses": "StorageClass", "volumeattachments": "VolumeAttachment", "csinodes": "CSINode",
    "csidrivers": "CSIDriver", "volumeattributesclasses": "VolumeAttributesClass",
    "csistoragecapacities": "CSIStorageCapacity", "priorityclasses": "PriorityClass",
    "runtimeclasses": "RuntimeClass", "validatingwebhookconfigurations": "ValidatingWebhookConfiguration",
    "mutatingwebhookconfigurations": "MutatingWebhookConfiguration",
    "validatingadmissionpolicies": "ValidatingAdmissionPolicy",
    "validatingadmissionpolicybindings": "ValidatingAdmissionPolicyBinding",
    "mutatingadmissionpolicies": "MutatingAdmissionPolicy",
    "mutatingadmissionpolicybindings": "MutatingAdmissionPolicyBinding",
    "certificatesigningrequests": "CertificateSigningRequest", "clustertrustbundles": "ClusterTrustBundle",
    "flowschemas": "FlowSchema", "prioritylevelconfigurations": "PriorityLevelConfiguration",
    "deviceclasses": "DeviceClass", "resourceslices": "ResourceSlice", "devicetaintrules": "DeviceTaintRule",
    "resourceclaims": "ResourceClaim", "resourceclaimtemplates": "ResourceClaimTemplate",
    "storageversionmigrations": "StorageVersionMigration", "storageversions": "StorageVersion",
    "apiservices": "APIService", "customresourcedefinitions": "CustomResourceDefinition",
}

#: kubectl's short names (``kubectl api-resources`` SHORTNAMES column).
SHORT_NAMES: dict[str, str] = {
    "po": "pods", "pvc": "persistentvolumeclaims", "svc": "services", "ep": "endpoints",
    "rc": "replicationcontrollers", "cm": "configmaps", "sa": "serviceaccounts", "ev": "events",
    "limits": "limitranges", "quota": "resourcequotas", "no": "nodes", "ns": "namespaces",
    "pv": "persistentvolumes", "deploy": "deployments", "rs": "replicasets", "sts": "statefulsets",
    "ds": "daemonsets", "cj": "cronjobs", "hpa": "horizontalpodautoscalers", "pdb": "poddisruptionbudgets",
    "ing": "ingresses", "netpol": "networkpolicies", "ip": "ipaddresses", "sc": "storageclasses",
    "vac": "volumeattributesclasses", "pc": "priorityclasses", "csr": "certificatesigningrequests",
    "crd": "customresourcedefinitions", "crds": "customresourcedefinitions",
}


def _words() -> dict[str, str]:
    """Every lower-case word a built-in plural is known by -> that plural."""
    out: dict[str, str] = {}
    for (_, plural) in BUILTIN_RESOURCES:
        out.setdefault(plural, plural)
    for plural, kind in KINDS.items():
        out.setdefault(kind.lower(), plural)  # the kind is the singular, lower-cased
    for short, plural in SHORT_NAMES.items():
        out.setdefault(short, plural)
    return out


_WORDS = _words()


def canonical_resource(word: str) -> str:
    """The name the readers take for what the user typed (``po`` -> ``pods``, ``deploy`` -> ``deployments``).

    ``name.group`` keeps its group: ``Deployment.apps`` -> ``deployments``
    (the plain name of that built-in), ``events.events.k8s.io`` stays as it
    is, ``Foo.example.com`` -> ``foo.example.com`` (custom: as given).

    Raises:
        ConfigError: empty, or a bare word no built-in resource has (with the closest words).
    """
    text = word.strip()
    low = text.lower()
    if not low:
        raise ConfigError("--resources: an empty resource name")
    if "/" in low:
        group, _, name = low.partition("/")
    elif "." in low:
        name, _, group = low.partition(".")
    else:
        name, group = low, ""
    plural = _WORDS.get(name)
    if not group:
        if plural is None:
            raise ConfigError(_unknown(text))
        return resolve_resource(plural).name
    if plural is not None and (group, plural) in BUILTIN_RESOURCES:
        return resolve_resource(f"{plural}.{group}").name
    if group == "core" and plural is not None:
        return resolve_resource(plural).name
    return f"{name}.{group}"


def canonical_resources(words: Sequence[str]) -> list[str]:
    """:func:`canonical_resource` of each word, each resource once (first mention kept).

    Raises:
        ConfigError: the first unknown word, with suggestions.
    """
    out: list[str] = []
    for w in words:
        name = canonical_resource(w)
        if name not in out:
            out.append(name)
    return out


def _unknown(word: str) -> str:
    # Two-letter short names (ds, no, po) are close to too much to be worth suggesting.
    candidates = [w for w in _WORDS if len(w) > 2]
    close = difflib.get_close_matches(word.lower(), candidates, n=5, cutoff=0.6)
    plurals = list(dict.fromkeys(_WORDS[c] for c in close))[:3]  # what the words name, each once
    hint = f"; did you mean {' or '.join(plurals)}?" if plurals else ""
    return (f"resource {word!r}: no built-in resource is called that{hint} "
            "(name a custom resource as plural.group, e.g. widgets.example.com)")
