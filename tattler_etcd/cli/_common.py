"""Flags that ``run`` and ``record`` share: the same reader is built from the same words."""

from __future__ import annotations

import argparse

from tattler_etcd.errors import ConfigError
from tattler_etcd.readers.etcd import DEFAULT_RESOURCES as _DEFAULT_RESOURCE_TUPLE

#: ``--resources`` when not given: the four kinds of the original tattler.
DEFAULT_RESOURCES = ",".join(_DEFAULT_RESOURCE_TUPLE)


class Groups(argparse.Namespace):
    """The argument groups :func:`add_reader_arguments` made, for command-specific additions."""

    source: argparse._ArgumentGroup
    etcd: argparse._ArgumentGroup
    apiserver: argparse._ArgumentGroup


def add_reader_arguments(
    p: argparse.ArgumentParser, *, endpoints_help: str, endpoints_metavar: str = "URL[,URL]",
) -> Groups:
    """The source, ``--resources``, etcd and APIServer flags; returns their groups."""
    g = Groups()
    g.source = p.add_argument_group("source")
    g.source.add_argument("--etcd-endpoints", metavar=endpoints_metavar, help=endpoints_help)
    g.source.add_argument("--kubeconfig", metavar="PATH", help="read through the APIServer named by this kubeconfig")
    g.source.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")
    g.source.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
    p.add_argument("--resources", default=DEFAULT_RESOURCES, metavar="LIST",
                   help="comma-separated resources, built-in by plural or custom as plural.group "
                        f"(default: {DEFAULT_RESOURCES})")
    g.etcd = p.add_argument_group("etcd")
    g.etcd.add_argument("--prefix", default="/registry", help="the APIServer's --etcd-prefix (default: /registry)")
    g.etcd.add_argument("--cacert", metavar="FILE", help="CA bundle to verify etcd's certificate")
    g.etcd.add_argument("--cert", metavar="FILE", help="client certificate for etcd")
    g.etcd.add_argument("--key", metavar="FILE", help="client key for etcd")
    g.etcd.add_argument("--page-size", type=int, default=500, help="keys per range request in a list (default: 500)")
    g.apiserver = p.add_argument_group("apiserver")
    g.apiserver.add_argument("--content-type", choices=("protobuf", "json"), default="protobuf",
                             help="wire format for built-in kinds (default: protobuf; custom resources are always JSON)")
    return g


def parse_resources(args: argparse.Namespace) -> list[str]:
    """``--resources`` as a list.

    Raises:
        ConfigError: it names no resource.
    """
    resources = [r.strip() for r in args.resources.split(",") if r.strip()]
    if not resources:
        raise ConfigError("--resources: give at least one resource")
    return resources
