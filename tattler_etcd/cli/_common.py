"""Flags that ``run`` and ``record`` share: the same reader is built from the same words.

etcd's flags are spelled as etcdctl spells them (``--endpoints``,
``--cacert``, ``--cert``, ``--key``, ``--user``, ``--insecure-skip-tls-verify``)
and take the same ``ETCDCTL_*`` environment variables; endpoints may be
``host:port`` without a scheme. The APIServer is found as kubectl finds it
(``--kubeconfig``, ``--context``, ``KUBECONFIG``). Resource names are taken as
kubectl takes them (see :mod:`tattler_etcd.cli._resources`).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Mapping
from typing import TextIO, TypedDict

from tattler_etcd.cli._resources import canonical_resources
from tattler_etcd.errors import ConfigError
from tattler_etcd.readers.etcd.keys import DEFAULT_RESOURCES as _DEFAULT_RESOURCE_TUPLE

#: ``--connect-timeout`` when not given: long enough for a slow control plane
#: to answer, short enough that a wrong address fails while someone watches.
DEFAULT_CONNECT_TIMEOUT = 30.0

#: ``--resources`` when not given: the four kinds of the original tattler.
DEFAULT_RESOURCES = ",".join(_DEFAULT_RESOURCE_TUPLE)

#: etcdctl's environment variables, by the flag each gives a default to.
ETCDCTL_ENV = {
    "etcd_endpoints": "ETCDCTL_ENDPOINTS",
    "cacert": "ETCDCTL_CACERT",
    "cert": "ETCDCTL_CERT",
    "key": "ETCDCTL_KEY",
    "user": "ETCDCTL_USER",
}

#: How to read a real cluster, for messages that say we did not.
HOW_TO_READ_A_CLUSTER = (
    "to read a real cluster give --endpoints HOST:PORT (etcd) or --kubeconfig PATH / --context NAME "
    "(the APIServer; KUBECONFIG and ETCDCTL_ENDPOINTS are read too)"
)


class Groups(argparse.Namespace):
    """The argument groups :func:`add_reader_arguments` made, for command-specific additions."""

    source: argparse._ArgumentGroup
    etcd: argparse._ArgumentGroup
    apiserver: argparse._ArgumentGroup


def add_reader_arguments(
    p: argparse.ArgumentParser, *, endpoints_help: str, endpoints_metavar: str = "HOST:PORT[,...]",
) -> Groups:
    """The source, ``--resources``, etcd and APIServer flags; returns their groups."""
    g = Groups()
    g.source = p.add_argument_group("source")
    g.source.add_argument("--endpoints", "--etcd-endpoints", dest="etcd_endpoints", metavar=endpoints_metavar,
                          help=f"{endpoints_help}: host:port or http(s)://host:port (https when TLS flags are "
                               "given; env ETCDCTL_ENDPOINTS)")
    g.source.add_argument("--kubeconfig", metavar="PATH",
                          help="read through the APIServer this kubeconfig names (default: KUBECONFIG, "
                               "then ~/.kube/config)")
    g.source.add_argument("--context", metavar="NAME",
                          help="kubeconfig context (default: the current one); implies reading the APIServer")
    g.source.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
    p.add_argument("--resources", default=DEFAULT_RESOURCES, metavar="LIST",
                   help="comma-separated resources as kubectl names them: plural, singular, short name or "
                        "kind (pods, pod, po, Pod), plural.group for others and custom resources "
                        f"(default: {DEFAULT_RESOURCES})")
    p.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT, metavar="SECONDS",
                   help="before the first sync, give up (exit 2, naming the endpoint and the reason) after "
                        "this long without an answer; a long first list that keeps answering is not cut; "
                        f"after the first sync, retry forever (default: {DEFAULT_CONNECT_TIMEOUT:g})")
    g.etcd = p.add_argument_group("etcd (flags and ETCDCTL_* variables as etcdctl takes them)")
    g.etcd.add_argument("--prefix", default="/registry", help="the APIServer's --etcd-prefix (default: /registry)")
    g.etcd.add_argument("--cacert", metavar="FILE", help="CA bundle to verify etcd's certificate (ETCDCTL_CACERT)")
    g.etcd.add_argument("--cert", metavar="FILE", help="client certificate for etcd (ETCDCTL_CERT)")
    g.etcd.add_argument("--key", metavar="FILE", help="client key for etcd (ETCDCTL_KEY)")
    g.etcd.add_argument("--user", metavar="NAME[:PASSWORD]",
                        help="etcd user (ETCDCTL_USER); without :PASSWORD it comes from ETCDCTL_PASSWORD "
                             "or is asked on the terminal")
    g.etcd.add_argument("--insecure-skip-tls-verify", action="store_true",
                        help="do not verify etcd's certificate (test clusters only)")
    g.etcd.add_argument("--page-size", type=int, default=500, help="keys per range request in a list (default: 500)")
    g.apiserver = p.add_argument_group("apiserver")
    g.apiserver.add_argument("--content-type", choices=("protobuf", "json"), default="protobuf",
                             help="wire format for built-in kinds (default: protobuf; custom resources are always JSON)")
    return g


def connect_timeout(args: argparse.Namespace) -> float:
    """``--connect-timeout``, checked.

    Raises:
        ConfigError: not more than 0.
    """
    if not args.connect_timeout > 0:
        raise ConfigError(f"--connect-timeout: must be more than 0 seconds, not {args.connect_timeout:g}")
    return float(args.connect_timeout)


def parse_resources(args: argparse.Namespace) -> list[str]:
    """``--resources`` as a list of canonical names (``po`` -> ``pods``, ``Deployment`` -> ``deployments``).

    Raises:
        ConfigError: it names no resource, or a name no resource has (with a "did you mean").
    """
    words = [r.strip() for r in args.resources.split(",") if r.strip()]
    if not words:
        raise ConfigError("--resources: give at least one resource")
    return canonical_resources(words)


def apply_environment(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> None:
    """Fill etcd flags not given from etcdctl's ``ETCDCTL_*`` variables (flags win)."""
    env = os.environ if environ is None else environ
    for dest, var in ETCDCTL_ENV.items():
        if getattr(args, dest, None) is None and env.get(var):
            setattr(args, dest, env[var])
    if env.get("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "").lower() in ("1", "true", "yes"):
        args.insecure_skip_tls_verify = True


def choose_source(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> str:
    """Which source the flags name: ``replay``, ``etcd``, ``apiserver``, ``in-cluster``, or ``none``.

    Flags first (``--replay``, ``--endpoints``, ``--kubeconfig``/``--context``,
    ``--in-cluster``), then the environment: ``ETCDCTL_ENDPOINTS`` or
    ``KUBECONFIG``. ``none`` only when nothing at all names a cluster.

    Raises:
        ConfigError: both ``ETCDCTL_ENDPOINTS`` and ``KUBECONFIG`` are set and no flag picks one.
    """
    env = os.environ if environ is None else environ
    if getattr(args, "replay", None):
        return "replay"
    if args.etcd_endpoints:
        return "etcd"
    if args.kubeconfig or args.context:
        return "apiserver"
    if args.in_cluster:
        return "in-cluster"
    from_env = [v for v in ("ETCDCTL_ENDPOINTS", "KUBECONFIG") if env.get(v)]
    if len(from_env) == 2:
        raise ConfigError("both ETCDCTL_ENDPOINTS and KUBECONFIG are set: say which to read with "
                          "--endpoints or --kubeconfig/--context")
    if from_env == ["ETCDCTL_ENDPOINTS"]:
        args.etcd_endpoints = env["ETCDCTL_ENDPOINTS"]
        return "etcd"
    if from_env == ["KUBECONFIG"]:
        return "apiserver"
    return "none"


def etcd_endpoints(args: argparse.Namespace) -> str:
    """``--endpoints`` as URLs: ``host:port`` gets ``http://`` (``https://`` when a TLS flag is given).

    Raises:
        ConfigError: no endpoint in it.
    """
    tls = bool(args.cacert or args.cert or args.key or args.insecure_skip_tls_verify)
    urls = []
    for raw in (args.etcd_endpoints or "").split(","):
        u = raw.strip()
        if u and "://" not in u:
            u = ("https://" if tls else "http://") + u
        if u:
            urls.append(u)
    if not urls:
        raise ConfigError("--endpoints: give at least one endpoint (HOST:PORT or http(s)://HOST:PORT)")
    return ",".join(urls)


def etcd_credentials(
    args: argparse.Namespace, *, stdin: TextIO | None = None, environ: Mapping[str, str] | None = None,
) -> tuple[str | None, str | None]:
    """``(user, password)`` from ``--user NAME[:PASSWORD]``; (None, None) without ``--user``.

    Without ``:PASSWORD``: ``ETCDCTL_PASSWORD``, else a prompt when stdin is a
    terminal (as etcdctl does), else an error (a job must not hang on a prompt).

    Raises:
        ConfigError: no password to be had, or an empty user name.
    """
    if not args.user:
        return None, None
    env = os.environ if environ is None else environ
    name, sep, password = args.user.partition(":")
    if not name:
        raise ConfigError("--user: give NAME or NAME:PASSWORD")
    if sep:
        return name, password
    if env.get("ETCDCTL_PASSWORD") is not None:
        return name, env["ETCDCTL_PASSWORD"]
    stream = sys.stdin if stdin is None else stdin
    if stream is not None and stream.isatty():
        return name, getpass.getpass(f"Password for etcd user {name}: ")
    raise ConfigError(f"--user {name}: no password: give --user {name}:PASSWORD, set ETCDCTL_PASSWORD, "
                      "or run on a terminal to be asked")


class EtcdOptions(TypedDict):
    """The keyword arguments :class:`EtcdReader` and ``record_etcd`` take from the etcd flags."""

    cacert: str | None
    cert: str | None
    key: str | None
    insecure_skip_tls_verify: bool
    user: str | None
    password: str | None


def etcd_options(args: argparse.Namespace) -> EtcdOptions:
    """The etcd flags as reader keyword arguments (asking for the password when it must)."""
    user, password = etcd_credentials(args)
    return EtcdOptions(
        cacert=args.cacert, cert=args.cert, key=args.key,
        insecure_skip_tls_verify=bool(args.insecure_skip_tls_verify), user=user, password=password,
    )


def kubeconfig_path(args: argparse.Namespace) -> str | None:
    """``--kubeconfig`` with ``~`` expanded (None: ``KUBECONFIG`` or ``~/.kube/config``, as kubectl)."""
    return os.path.expanduser(args.kubeconfig) if args.kubeconfig else None
