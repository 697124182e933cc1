"""Which cluster the cockpit talks to, and with what credentials, by kubectl's rules.

`load_target()` picks the kubeconfig files (`--kubeconfig`, else `$KUBECONFIG`, else
`~/.kube/config`), the context (`--context`, else the current one) and the namespace (`-n`, else
the context's, else `kube-llm`). The `kubernetes` package's own loader reads the credentials:
bearer tokens and token files, client certificates and keys, CA files or data,
`insecure-skip-tls-verify`, `tls-server-name` and proxies. Exec credential plugins are run by
`tui.cluster.exec_plugin` and their tokens kept by `tui.cluster.credentials`, as client-go does
(the package's own handling renews too often and ignores 401s: see why there). An exec plugin
runs once in `load_target`, before the cockpit takes the terminal. Nothing here speaks TLS.

A `ClusterTarget` never shows its credentials: they live in a `Credentials` holder whose repr
hides them, so a target can be printed, logged or put in a snapshot (docs/reliability.md, T6).
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from kubernetes import client as sync_client
from kubernetes.aio import client as aio_client
from kubernetes.aio.client import rest as aio_rest
from kubernetes.config import kube_config
from kubernetes.config.config_exception import ConfigException

from tui.cluster import incluster
from tui.cluster.credentials import (
    Credentials,
    RenewingApiClient,
    TargetHeaders,
    renewing_configuration,
)
from tui.cluster.errors import KubeconfigError
from tui.cluster.exec_plugin import ExecPlugin

__all__ = ["ClusterTarget", "KubeconfigError", "in_cluster_target", "load_target"]

DEFAULT_NAMESPACE = "kube-llm"
DEFAULT_KUBECONFIG = Path("~/.kube/config")
SANDBOX_CONTEXTS = frozenset(
    {
        "kube-llm-sandbox",
        "kube-llm-sandbox-cockpit",
        "kube-llm-sandbox-cert",
        "kube-llm-sandbox-exec",
    }
)
"""The context names the sandbox writes into its kubeconfig (the admin by token, client
certificate and exec plugin, and the cockpit's Role)."""

# A namespace is a DNS label (RFC 1123), as the API server validates it.
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class ClusterTarget:
    """The cluster, context and namespace the cockpit works on, and how to reach it."""

    context: str
    server: str
    namespace: str
    sandbox: bool
    """The context is the kube-llm sandbox's (see `is_sandbox`)."""
    kubeconfig: tuple[Path, ...] = ()
    """The files the kubeconfig was merged from."""
    credentials: Credentials = field(
        default_factory=lambda: Credentials(sync_client.Configuration()),
        repr=False,
        compare=False,
    )

    def configuration(self) -> aio_client.Configuration:
        """A `kubernetes.aio` client configuration with this context's credentials (an exec
        plugin's token is read before each request)."""
        loaded = self.credentials.configuration
        configuration = aio_client.Configuration(
            host=self.server,
            ssl_ca_cert=loaded.ssl_ca_cert,
            cert_file=loaded.cert_file,
            key_file=loaded.key_file,
            verify_ssl=loaded.verify_ssl,
            tls_server_name=getattr(loaded, "tls_server_name", None),
            proxy=loaded.proxy,
        )
        return renewing_configuration(configuration, self.credentials)

    def api_client(self) -> aio_client.ApiClient:
        """A new `kubernetes.aio` ApiClient for this target, with its credentials (renewed
        when they expire or are refused; close it when done)."""
        return RenewingApiClient(self.configuration(), self.credentials)

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for other HTTP clients (httpx2): the kubeconfig's CA, client
        certificate and `insecure-skip-tls-verify`, built by the kubernetes client's own code."""
        context: ssl.SSLContext = aio_rest.RESTClientObject(self.configuration()).ssl_context
        return context

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate a request (empty when the context uses certificates)."""
        authorization = self.credentials.authorization()
        return {"Authorization": authorization} if authorization else {}

    def header_source(self) -> TargetHeaders | None:
        """The credentials as a source read at each request, when they can expire (an exec
        plugin's); None when the headers at start stay good."""
        return TargetHeaders(self.credentials) if self.credentials.expiring else None

    def client_cert(self) -> tuple[str, str] | None:
        """The client certificate and key files, when the context authenticates with them."""
        loaded = self.credentials.configuration
        if loaded.cert_file and loaded.key_file:
            return str(loaded.cert_file), str(loaded.key_file)
        return None


def is_sandbox(context: str, server: str) -> bool:
    """The kube-llm sandbox: one of its two context names, on a loopback API server.

    Both are needed: a real cluster's context that happens to be named `kube-llm-sandbox`
    is not on loopback, and must keep the confirmations a real cluster gets (T2).
    """
    if context not in SANDBOX_CONTEXTS:
        return False
    host = urlsplit(server).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def kubeconfig_paths(
    kubeconfig: Path | None, environ: Mapping[str, str] | None = None
) -> tuple[Path, ...]:
    """The kubeconfig files to merge, by kubectl's rules; an error when none can be read."""
    env = os.environ if environ is None else environ
    if kubeconfig is not None:
        path = kubeconfig.expanduser()
        if not path.is_file():
            raise KubeconfigError(f"kubeconfig file not found: {path}")
        return (path,)
    listed = [Path(p).expanduser() for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        existing = tuple(p for p in listed if p.is_file())
        if not existing:
            names = ", ".join(str(p) for p in listed)
            raise KubeconfigError(f"none of the files in KUBECONFIG exist: {names}")
        return existing
    default = DEFAULT_KUBECONFIG.expanduser()
    if not default.is_file():
        raise KubeconfigError(
            f"no kubeconfig: {default} does not exist; pass --kubeconfig or set KUBECONFIG"
        )
    return (default,)


def _read(path: Path) -> dict[str, Any]:
    """One kubeconfig file as a mapping, or an error naming the file (and the line)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise KubeconfigError(f"cannot read the kubeconfig {path}: {error}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = error.problem or error.context or "malformed YAML"
        raise KubeconfigError(f"{path}: malformed YAML{where}: {problem}") from None
    except yaml.YAMLError as error:
        raise KubeconfigError(f"{path}: malformed YAML: {error}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise KubeconfigError(
            f"{path}: not a kubeconfig (expected a mapping with clusters, contexts and users)"
        )
    return loaded


def _named(entries: Any) -> list[dict[str, Any]]:
    """The well-formed `{name: ..., <kind>: {...}}` entries of one list."""
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]


def _check_namespace(namespace: str) -> None:
    if len(namespace) > 63 or not _NAMESPACE.match(namespace):
        raise KubeconfigError(
            f"invalid namespace {namespace!r}: lowercase letters, digits and '-', "
            "at most 63 characters, starting and ending with a letter or digit"
        )


def load_target(
    kubeconfig: Path | None, context: str | None, namespace: str | None
) -> ClusterTarget:
    """The cluster to work on, as kubectl would choose it with the same flags (in a pod with no
    kubeconfig: the pod's own ServiceAccount, as kubectl does)."""
    if _in_a_pod_without_kubeconfig(kubeconfig, context):
        return in_cluster_target(namespace)
    paths = kubeconfig_paths(kubeconfig)
    files = ", ".join(str(p) for p in paths)
    contexts: dict[str, dict[str, Any]] = {}
    clusters: dict[str, tuple[dict[str, Any], Path]] = {}
    users: dict[str, tuple[Any, Path]] = {}
    current: str | None = None
    # kubectl merges the files: the first file to name a context, cluster or current context
    # wins (the library's merger lets the last current-context win, so it is chosen here).
    for path in paths:
        config = _read(path)
        for entry in _named(config.get("contexts")):
            contexts.setdefault(entry["name"], entry.get("context") or {})
        for entry in _named(config.get("clusters")):
            clusters.setdefault(entry["name"], (entry.get("cluster") or {}, path))
        for entry in _named(config.get("users")):
            users.setdefault(entry["name"], (entry.get("user") or {}, path))
        if current is None and config.get("current-context"):
            current = str(config["current-context"])
    known = ", ".join(sorted(contexts)) or "none"
    chosen = context or current
    if not chosen:
        raise KubeconfigError(
            f"{files} has no current context; pass --context (contexts there: {known})"
        )
    if chosen not in contexts:
        raise KubeconfigError(f"context {chosen!r} not found in {files}; contexts there: {known}")
    details = contexts[chosen] if isinstance(contexts[chosen], dict) else {}
    cluster_name = details.get("cluster")
    if cluster_name not in clusters:
        raise KubeconfigError(
            f"context {chosen!r} in {files} names the cluster {cluster_name!r}, "
            "which is not defined there"
        )
    if not (clusters[cluster_name][0] or {}).get("server"):
        raise KubeconfigError(f"the cluster {cluster_name!r} in {files} has no server address")

    loaded = sync_client.Configuration()
    try:
        merged = kube_config.KubeConfigMerger(os.pathsep.join(str(p) for p in paths))
        # No base path: each file's relative paths resolve against its own folder.
        loader = _LoaderLeavingExec(merged.config, active_context=chosen, config_base_path=None)
        loader.load_and_set(loaded)
    except ConfigException as error:
        raise KubeconfigError(f"{files}, context {chosen!r}: {error}") from None
    except (OSError, ValueError) as error:
        # A certificate file that cannot be read, base64 data that does not decode...
        raise KubeconfigError(f"{files}, context {chosen!r}: {error}") from None

    user_name = str(details.get("user"))
    user, base = users.get(user_name, ({}, paths[0]))
    exec_spec = user.get("exec") if isinstance(user, dict) else None
    plugin = None
    if isinstance(exec_spec, dict):
        cluster, cluster_file = clusters[cluster_name]
        plugin = ExecPlugin(
            exec_spec,
            base.parent,
            f"{base}, user {user_name!r}",
            cluster=cluster,
            cluster_base=cluster_file.parent,
        )
    chosen_namespace = namespace or details.get("namespace") or DEFAULT_NAMESPACE
    _check_namespace(chosen_namespace)
    server = str(loaded.host)
    credentials = Credentials(loaded, plugin)
    credentials.prime()
    return ClusterTarget(
        context=chosen,
        server=server,
        namespace=chosen_namespace,
        sandbox=is_sandbox(chosen, server),
        kubeconfig=paths,
        credentials=credentials,
    )


class _LoaderLeavingExec(kube_config.KubeConfigLoader):
    """The `kubernetes` package's loader for everything but an exec plugin, which
    `tui.cluster.exec_plugin` runs (see why there): the package's own run would start the
    plugin once more at load, and only log its failure."""

    def _load_from_exec_plugin(self) -> bool | None:
        return True if self._user is not None and "exec" in self._user else None


def _in_a_pod_without_kubeconfig(kubeconfig: Path | None, context: str | None) -> bool:
    return (
        kubeconfig is None
        and context is None
        and not os.environ.get("KUBECONFIG")
        and not DEFAULT_KUBECONFIG.expanduser().is_file()
        and incluster.in_cluster(os.environ)
    )


def in_cluster_target(
    namespace: str | None, environ: Mapping[str, str] | None = None
) -> ClusterTarget:
    """The pod's own cluster, as its ServiceAccount (`tui.cluster.incluster`): what the web
    frontend pods use. The official loader re-reads the token file, so a projected token the
    kubelet rotates is picked up."""
    env = os.environ if environ is None else environ
    if not incluster.in_cluster(env):
        raise KubeconfigError("not in a cluster: KUBERNETES_SERVICE_HOST is not set")
    try:
        loaded, pod_namespace = incluster.load_in_cluster(env)
    except (ConfigException, OSError) as error:
        folder = incluster.serviceaccount_dir(env)
        raise KubeconfigError(
            f"in a pod, but its ServiceAccount cannot be used ({folder}): {error}"
        ) from None
    chosen = namespace or pod_namespace or DEFAULT_NAMESPACE
    _check_namespace(chosen)
    return ClusterTarget(
        context=incluster.IN_CLUSTER_CONTEXT,
        server=str(getattr(loaded, "host", "")),
        namespace=chosen,
        sandbox=False,
        credentials=Credentials(loaded),
    )
