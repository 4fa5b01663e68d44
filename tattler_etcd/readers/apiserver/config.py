"""Where the APIServer is and how to prove who we are, from the kubernetes package's loaders.

We reuse the official client's kubeconfig and in-cluster loaders rather than
parse kubeconfigs ourselves: they already know contexts, inline and file
certificates, ``insecure-skip-tls-verify``, ``tls-server-name``, proxies,
tokens, token files and exec credential plugins, and their behaviour is what
users expect from ``kubectl``. What they produce (a ``Configuration``) is
turned into the three things an ``httpx.AsyncClient`` needs: a base URL, an
SSL context and an ``Authorization`` header.

Credentials that expire (exec plugins with an ``expirationTimestamp``, the
service-account token that the kubelet rotates) are refreshed through the
loader's own refresh hook. The hook may run a subprocess or read a file, so it
runs on a worker thread, and only when due: every
:data:`REFRESH_INTERVAL` seconds, a little before the plugin's stated expiry,
or after a 401.
"""

from __future__ import annotations

import datetime
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from tattler_etcd.errors import ConfigError

__all__ = [
    "REFRESH_INTERVAL",
    "ClusterConfig",
    "kubeconfig_paths",
    "load_incluster",
    "load_kubeconfig",
]

#: How often a refreshable credential is re-checked. The kubernetes package's
#: in-cluster loader re-reads the token file once a minute; we match it.
REFRESH_INTERVAL = 60.0

#: Refresh an expiring credential this long before its stated expiry, so a
#: request in flight never carries a token that dies on the way.
EXPIRY_MARGIN = 30.0

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass
class ClusterConfig:
    """Base URL, TLS and credentials for one APIServer.

    Build it with :func:`load_kubeconfig` or :func:`load_incluster`, or
    directly (tests, a plain ``http://`` proxy such as ``kubectl proxy``).
    """

    #: ``https://host:port`` (no trailing slash).
    server: str
    #: The SSL context for ``https`` servers (None for ``http``).
    ssl_context: ssl.SSLContext | None = None
    #: ``tls-server-name``: the name the server's certificate must carry, when
    #: it differs from the host in ``server``.
    tls_server_name: str | None = None
    #: An HTTP(S) proxy URL from the kubeconfig.
    proxy: str | None = None
    #: A static ``Authorization`` header value ("Bearer ...", "Basic ...").
    authorization: str | None = None
    #: Where the configuration came from, for messages ("kubeconfig PATH, context NAME").
    origin: str = "config"
    _refresh: Callable[[], str | None] | None = field(default=None, repr=False)
    _expiry: Callable[[], float | None] | None = field(default=None, repr=False)
    _next_refresh: float = field(default=0.0, repr=False)

    async def auth_headers(self) -> dict[str, str]:
        """The headers to send now (refreshing an expiring credential first when due)."""
        if self._refresh is not None and time.monotonic() >= self._next_refresh:
            await self._run_refresh()
        return {"Authorization": self.authorization} if self.authorization else {}

    async def refresh_after_unauthorized(self) -> bool:
        """After a 401: refresh a refreshable credential; True if it changed (worth one retry)."""
        if self._refresh is None:
            return False
        before = self.authorization
        await self._run_refresh()
        return self.authorization != before

    async def _run_refresh(self) -> None:
        assert self._refresh is not None
        refresh = self._refresh
        try:
            self.authorization = await trio.to_thread.run_sync(refresh)
        except Exception as exc:  # the kubernetes loaders raise ConfigException and OSError
            raise ConfigError(f"{self.origin}: refreshing credentials failed: {_short(exc)}") from exc
        delay = REFRESH_INTERVAL
        if self._expiry is not None:
            expires = self._expiry()
            if expires is not None:
                delay = max(0.0, min(delay, expires - time.time() - EXPIRY_MARGIN))
        self._next_refresh = time.monotonic() + delay


def _short(exc: BaseException) -> str:
    # kubernetes' messages may quote a plugin's stderr: keep them short.
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:256]


def _ssl_context(conf: Any, origin: str) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=conf.ssl_ca_cert or None)
        if conf.cert_file:
            ctx.load_cert_chain(conf.cert_file, conf.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{origin}: cannot load TLS files: {_short(exc)}") from exc
    if not conf.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _from_configuration(conf: Any, origin: str, loader: Any) -> ClusterConfig:
    server = str(conf.host).rstrip("/")
    if not server.startswith(("http://", "https://")):
        raise ConfigError(f"{origin}: server {server!r} is not an http(s) URL")
    hook = conf.refresh_api_key_hook

    def current() -> str | None:
        value = conf.api_key.get("BearerToken") or conf.api_key.get("authorization")
        return str(value) if value else None

    refresh: Callable[[], str | None] | None = None
    if hook is not None:
        def refresh() -> str | None:
            hook(conf)
            return current()

    def expiry() -> float | None:
        exp = getattr(loader, "__dict__", {}).get("expiry")
        if isinstance(exp, datetime.datetime):
            if exp.tzinfo is None:
                exp = exp.replace(tzinfo=datetime.UTC)
            return exp.timestamp()
        return None

    authorization = current()
    if authorization is None and getattr(conf, "username", None) and getattr(conf, "password", None):
        authorization = conf.get_basic_auth_token()
    cfg = ClusterConfig(
        server=server,
        ssl_context=_ssl_context(conf, origin) if server.startswith("https://") else None,
        tls_server_name=getattr(conf, "tls_server_name", None) or None,
        proxy=getattr(conf, "proxy", None) or None,
        authorization=authorization,
        origin=origin,
        _refresh=refresh,
        _expiry=expiry,
    )
    exp = expiry()
    cfg._next_refresh = time.monotonic() + (
        REFRESH_INTERVAL if exp is None else max(0.0, min(REFRESH_INTERVAL, exp - time.time() - EXPIRY_MARGIN))
    )
    return cfg


def kubeconfig_paths(path: str | os.PathLike[str] | None = None) -> list[str]:
    """The kubeconfig files to read, as kubectl picks them (``~`` expanded).

    ``path`` when given (one file); else every entry of ``$KUBECONFIG`` (a
    list separated by ``os.pathsep``; empty entries skipped); else
    ``~/.kube/config``.
    """
    if path is not None:
        return [os.path.expanduser(os.fspath(path))]
    env = os.environ.get("KUBECONFIG", "")
    listed = [os.path.expanduser(p) for p in env.split(os.pathsep) if p.strip()]
    return listed or [os.path.expanduser("~/.kube/config")]


def load_kubeconfig(path: str | os.PathLike[str] | None = None, context: str | None = None) -> ClusterConfig:
    """Read a kubeconfig: ``path``, else ``$KUBECONFIG`` (merged as kubectl merges it), else ``~/.kube/config``.

    ``~`` is expanded. Several files in ``$KUBECONFIG`` are merged as kubectl
    merges them: the first file to define a cluster, user or context by name
    wins, ``current-context`` comes from the first file that sets it, and
    files that do not exist are skipped (at least one must).

    Blocking (it may run an exec plugin): call it before ``trio.run`` or
    through ``trio.to_thread.run_sync``.

    Raises:
        ConfigError: no such file or context, a malformed file, an exec plugin
            that failed or gave nothing; the message names the file(s) and context.
    """
    import yaml
    from kubernetes.client import Configuration
    from kubernetes.config import kube_config as _kube_config
    from kubernetes.config.config_exception import ConfigException

    kube_config: Any = _kube_config  # untyped package
    paths = kubeconfig_paths(path)
    origin = f"kubeconfig {os.pathsep.join(paths)}" + (f", context {context}" if context else "")
    existing = [p for p in paths if os.path.isfile(p)]
    if not existing:
        raise ConfigError(f"{origin}: no such file")
    conf = Configuration()
    try:
        # kubectl skips empty files in the list (a lone empty file is still an error).
        files = [p for p in existing if os.path.getsize(p)] or existing[:1]
        merged = kube_config.KubeConfigMerger(files[0])
        for extra in files[1:]:
            merged.load_config(extra)
        if merged.config is None:
            raise ConfigError(f"{origin}: no configuration found in it")
        # The merger lets the last file's current-context win; kubectl takes the first that sets one.
        for p in files:
            doc = merged.config_files.get(p)
            if isinstance(doc, dict) and doc.get("current-context"):
                merged.config.value["current-context"] = doc["current-context"]
                break
        loader = kube_config.KubeConfigLoader(config_dict=merged.config, active_context=context)
        loader.load_and_set(conf)
    except ConfigException as exc:
        raise ConfigError(f"{origin}: {_short(exc)}") from exc
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{origin}: cannot read it: {_short(exc)}") from exc
    user: Mapping[str, Any] = getattr(loader, "_user", None) or {}
    if "exec" in user and "token" not in loader.__dict__ and not conf.cert_file:
        raise ConfigError(f"{origin}: the exec credential plugin gave no credentials (see its errors above)")
    return _from_configuration(conf, origin, loader)


def load_incluster(
    *,
    token_file: str | None = None,
    ca_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClusterConfig:
    """The pod's service account (``KUBERNETES_SERVICE_HOST``/``_PORT``, token, CA).

    The token is re-read from its file every minute, as the kubelet rotates it.

    Raises:
        ConfigError: not running in a pod, or the account's files are missing.
    """
    from kubernetes.client import Configuration
    from kubernetes.config import incluster_config
    from kubernetes.config.config_exception import ConfigException

    conf = Configuration()
    loader_class: Any = incluster_config.InClusterConfigLoader  # untyped package
    loader = loader_class(
        token_filename=token_file or os.path.join(SERVICE_ACCOUNT_DIR, "token"),
        cert_filename=ca_file or os.path.join(SERVICE_ACCOUNT_DIR, "ca.crt"),
        environ=dict(environ) if environ is not None else os.environ,
    )
    try:
        loader.load_and_set(conf)
    except ConfigException as exc:
        raise ConfigError(f"in-cluster config: {_short(exc)}") from exc
    return _from_configuration(conf, "in-cluster config", loader)
