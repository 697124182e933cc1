"""TLS for the sandbox's API server: a throwaway CA and a server certificate for 127.0.0.1.

kubectl (client-go) never sends a bearer token over plain HTTP, so the API server speaks HTTPS
like a real one, and the kubeconfig carries the CA. `trustme` makes both, fresh at each start:
a CA that lives as long as the sandbox, and a certificate for 127.0.0.1 and localhost.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Pki:
    """Paths of the CA certificate and the server's certificate and key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def _write(path: Path, data: bytes, mode: int) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    path.chmod(mode)


def make_pki(directory: Path) -> Pki:
    """Create a CA and a server certificate (127.0.0.1, localhost) valid for 30 days."""
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
    pki = Pki(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    _write(pki.ca_cert, ca.cert_pem.bytes(), 0o644)
    _write(pki.server_cert, b"".join(blob.bytes() for blob in server.cert_chain_pems), 0o644)
    _write(pki.server_key, server.private_key_pem.bytes(), 0o600)
    return pki
