"""The cluster a pod is in: the in-cluster configuration, read by the `kubernetes` package.

A pod gets `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT` and, when its ServiceAccount
token is mounted, `token`, `ca.crt` and `namespace` in /var/run/secrets/kubernetes.io/
serviceaccount. The official loader (`kubernetes.config.incluster_config`) reads them and re-reads
the token as the kubelet rotates it. The sandbox runs pods as local processes and cannot mount
at that path, so it names the folder in `KUBE_LLM_SERVICEACCOUNT_DIR` (README, "The sandbox").
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kubernetes import client as sync_client
from kubernetes.config import incluster_config
from kubernetes.config.config_exception import ConfigException

SERVICEACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SERVICEACCOUNT_DIR_ENV = "KUBE_LLM_SERVICEACCOUNT_DIR"
IN_CLUSTER_CONTEXT = "in-cluster"
"""The context name a target read from the in-cluster configuration shows."""


def serviceaccount_dir(environ: Mapping[str, str]) -> Path:
    """Where the pod's ServiceAccount files are."""
    return Path(environ.get(SERVICEACCOUNT_DIR_ENV) or SERVICEACCOUNT_DIR)


def in_cluster(environ: Mapping[str, str]) -> bool:
    """Whether this process runs in a pod (the API server's address is in the environment)."""
    return bool(environ.get(incluster_config.SERVICE_HOST_ENV_NAME))


def load_in_cluster(environ: Mapping[str, str]) -> tuple[object, str]:
    """The loaded client configuration and the pod's namespace.

    Raises ConfigException (from the loader) when a file or variable is missing or empty.
    """
    folder = serviceaccount_dir(environ)
    loaded = sync_client.Configuration()
    incluster_config.InClusterConfigLoader(
        token_filename=str(folder / "token"),
        cert_filename=str(folder / "ca.crt"),
        environ=dict(environ),
    ).load_and_set(loaded)
    try:
        namespace = (folder / "namespace").read_text().strip()
    except OSError as error:
        raise ConfigException(f"cannot read the pod's namespace: {error}") from None
    return loaded, namespace
