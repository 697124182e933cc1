"""TLS for the sandbox's API server: a throwaway CA, a server certificate for 127.0.0.1, and a
client certificate for the admin.

kubectl (client-go) never sends a bearer token over plain HTTP, so the API server speaks HTTPS
like a real one, and the kubeconfig carries the CA. `trustme` makes both, fresh at each start:
a CA that lives as long as the sandbox, and a certificate for 127.0.0.1 and localhost.

The client certificate names its user as the API server reads one (`CN` the user, `O` the
group): `kube-llm-sandbox-admin` in `system:masters`, as a Minikube or kubeadm kubeconfig's
admin certificate does. The server asks for client certificates but does not require them.

The CA's key stays beside its certificate (`ca.key`, mode 0600), as Minikube's `ca.key` and
kubeadm's `/etc/kubernetes/pki/ca.key` do, so certificates for other users can be signed (the
tests sign expired ones). It grants nothing the admin's key in the same folder does not.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Pki:
    """Paths of the CA's certificate and key, the server's and the admin's."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _write(path: Path, data: bytes, mode: int) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    path.chmod(mode)


ADMIN_USER = "kube-llm-sandbox-admin"
ADMIN_GROUP = "system:masters"
"""The group whose members may do anything, as in Kubernetes' default RBAC."""


def make_pki(directory: Path, admin_user: str = ADMIN_USER, admin_group: str = ADMIN_GROUP) -> Pki:
    """Create a CA, a server certificate (127.0.0.1, localhost) and the admin's client
    certificate (CN `admin_user`, O `admin_group`), valid for 30 days."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca = trustme.CA(organization_name="kube-llm sandbox")
    server = ca.issue_cert(
        "127.0.0.1",
        "localhost",
        common_name="kube-apiserver",
        not_before=now - dt.timedelta(minutes=5),
        not_after=now + dt.timedelta(days=30),
    )
    admin = ca.issue_cert(
        admin_user,
        common_name=admin_user,
        organization_name=admin_group,
        not_before=now - dt.timedelta(minutes=5),
        not_after=now + dt.timedelta(days=30),
    )
    pki = Pki(
        directory / "ca.crt",
        directory / "ca.key",
        directory / "server.crt",
        directory / "server.key",
        directory / "admin.crt",
        directory / "admin.key",
    )
    _write(pki.ca_cert, ca.cert_pem.bytes(), 0o644)
    _write(pki.ca_key, ca.private_key_pem.bytes(), 0o600)
    _write(pki.server_cert, b"".join(blob.bytes() for blob in server.cert_chain_pems), 0o644)
    _write(pki.server_key, server.private_key_pem.bytes(), 0o600)
    _write(pki.client_cert, b"".join(blob.bytes() for blob in admin.cert_chain_pems), 0o644)
    _write(pki.client_key, admin.private_key_pem.bytes(), 0o600)
    return pki
