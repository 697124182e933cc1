"""Issue 14: client certificates the API server cannot verify get its 401, not a broken handshake.

kube-apiserver asks for a client certificate without verifying it in the TLS handshake and
verifies it per request in its x509 authenticator; a certificate that fails (another CA,
expired, not yet valid) is an authentication error, which the union of authenticators does
not hand on to anonymous access, so the request is a 401 `Unauthorized` Status, unless a
later authenticator (a bearer token) succeeds. One live sandbox (fake engine) serves the
module; after every refusal it goes on serving, with its objects and its open connections.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trustme
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.sandbox.harness import KUBECTL, NAMESPACE, RunningSandbox, fake_engine_cmd, start_sandbox

pytestmark = pytest.mark.slow(reason="a live sandbox behind the client certificate tests")

ADMIN = "kube-llm-sandbox-admin"
UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}
"""What the API server's `Unauthorized` handler writes (apierrors.NewUnauthorized)."""

PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"
WHOAMI = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
WHOAMI_BODY = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(
        tmp_path_factory.mktemp("certificates"), engine_cmd=fake_engine_cmd(busy_ms_per_token=0)
    )
    yield running
    running.stop()


def _write_pair(leaf: trustme.LeafCert, directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return cert, key


def _admin_named(
    ca: trustme.CA, not_before: dt.datetime | None = None, not_after: dt.datetime | None = None
) -> trustme.LeafCert:
    """A certificate naming the sandbox's admin in `system:masters`, signed by `ca`."""
    return ca.issue_cert(
        ADMIN,
        common_name=ADMIN,
        organization_name="system:masters",
        not_before=not_before,
        not_after=not_after,
    )


def _sandbox_ca(sandbox: RunningSandbox) -> trustme.CA:
    pki = sandbox.kubeconfig.parent / "pki"
    return trustme.CA.from_pem((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes())


def _client(
    sandbox: RunningSandbox, pair: tuple[Path, Path], token: str | None = None
) -> httpx2.Client:
    context = ssl.create_default_context(cafile=str(sandbox.ca_file))
    context.load_cert_chain(str(pair[0]), str(pair[1]))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.Client(base_url=sandbox.server, verify=context, headers=headers, timeout=30)


def _cockpit_token(sandbox: RunningSandbox) -> str:
    config = yaml.safe_load(sandbox.kubeconfig.read_text())
    users = {u["name"]: u["user"].get("token") for u in config["users"]}
    return str(users["kube-llm-sandbox-cockpit"])


def _whoami(client: httpx2.Client) -> dict[str, Any]:
    response = client.post(WHOAMI, json=WHOAMI_BODY)
    assert response.status_code == 201, response.text
    info: dict[str, Any] = response.json()["status"]["userInfo"]
    return info


def test_a_certificate_from_another_ca_is_401_and_the_sandbox_goes_on(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    foreign = _write_pair(_admin_named(trustme.CA()), tmp_path, "foreign")
    with sandbox.http() as admin:
        created = admin.post(
            f"/api/v1/namespaces/{NAMESPACE}/configmaps",
            json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}},
        )
        assert created.status_code == 201, created.text
        for _ in range(5):  # a connection each: every handshake completes, every request is 401
            with _client(sandbox, foreign) as client:
                refused = client.get(PODS)
                assert refused.status_code == 401
                assert refused.headers["content-type"] == "application/json"
                assert refused.json() == UNAUTHORIZED
                assert client.post(WHOAMI, json=WHOAMI_BODY).json() == UNAUTHORIZED
        # The admin's connection from before, the object, and new connections all carry on.
        assert admin.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps/kept").status_code == 200
    with sandbox.http() as admin:
        assert admin.get(PODS).status_code == 200
    assert sandbox.process.poll() is None
    assert "Traceback" not in sandbox.log()


def test_kubectl_with_a_certificate_from_another_ca_must_log_in(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    cert, key = _write_pair(_admin_named(trustme.CA()), tmp_path, "foreign")
    config = yaml.safe_load(sandbox.kubeconfig.read_text())
    config["users"] = [
        {"name": "foreign", "user": {"client-certificate": str(cert), "client-key": str(key)}}
    ]
    config["contexts"][0]["context"]["user"] = "foreign"
    config["contexts"] = config["contexts"][:1]
    config["current-context"] = config["contexts"][0]["name"]
    foreign_config = tmp_path / "kubeconfig"
    foreign_config.write_text(yaml.safe_dump(config))

    def kubectl_get_pods(cache: str, *args: str) -> subprocess.CompletedProcess[str]:
        # A fresh discovery cache each, so both meet the same first request (discovery's).
        return subprocess.run(
            [
                str(KUBECTL),
                *args,
                "--cache-dir",
                str(tmp_path / cache),
                "get",
                "pods",
                "-n",
                NAMESPACE,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    refused = kubectl_get_pods("foreign", "--kubeconfig", str(foreign_config))
    assert refused.returncode == 1
    assert "error: You must be logged in to the server" in refused.stderr
    # Word for word what kubectl says for a bad token: the API server's 401 Status for both.
    bad_token = kubectl_get_pods("token", "--kubeconfig", str(sandbox.kubeconfig), "--token", "bad")
    assert bad_token.returncode == 1
    assert refused.stderr.splitlines()[-1] == bad_token.stderr.splitlines()[-1]
    # The sandbox's own certificate context still works, with kubectl.
    allowed = sandbox.kubectl("--context", "kube-llm-sandbox-cert", "get", "pods", "-n", NAMESPACE)
    assert allowed.returncode == 0, allowed.stderr


def test_a_valid_token_beside_a_foreign_certificate_authenticates(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    foreign = _write_pair(_admin_named(trustme.CA()), tmp_path, "foreign")
    # The union of authenticators returns the first success: x509 failed, the token succeeds,
    # and the user is the token's (the cockpit's ServiceAccount), never the certificate's.
    with _client(sandbox, foreign, token=_cockpit_token(sandbox)) as client:
        info = _whoami(client)
        assert info["username"] == "system:serviceaccount:kube-llm:kube-llm-cockpit"
        assert "system:masters" not in info.get("groups", [])
        assert client.get(PODS).status_code == 200
        assert client.get(f"/api/v1/namespaces/{NAMESPACE}/secrets").status_code == 403
    with _client(sandbox, foreign, token="not-a-token") as client:
        assert client.get(PODS).json() == UNAUTHORIZED


@pytest.mark.parametrize(
    "validity",
    [
        pytest.param({"not_after": -dt.timedelta(hours=1)}, id="expired"),
        pytest.param({"not_before": dt.timedelta(hours=1)}, id="not-yet-valid"),
    ],
)
def test_a_certificate_from_the_sandbox_ca_outside_its_validity_is_401(
    sandbox: RunningSandbox, tmp_path: Path, validity: dict[str, dt.timedelta]
) -> None:
    now = dt.datetime.now(dt.UTC)
    dates = {
        "not_before": now - dt.timedelta(days=2),
        "not_after": now + dt.timedelta(days=2),
        **{name: now + offset for name, offset in validity.items()},
    }
    dated = _admin_named(_sandbox_ca(sandbox), dates["not_before"], dates["not_after"])
    pair = _write_pair(dated, tmp_path, "dated")
    with _client(sandbox, pair) as client:
        assert client.get(PODS).json() == UNAUTHORIZED
    # Within its dates, a certificate from the same CA is the admin.
    now = dt.datetime.now(dt.UTC)
    fresh = _admin_named(
        _sandbox_ca(sandbox),
        not_before=now - dt.timedelta(hours=1),
        not_after=now + dt.timedelta(hours=1),
    )
    with _client(sandbox, _write_pair(fresh, tmp_path, "fresh")) as client:
        info = _whoami(client)
        assert info["username"] == ADMIN
        assert "system:masters" in info["groups"]


def test_a_certificate_from_the_sandbox_ca_only_for_servers_is_401(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    # The x509 authenticator verifies for client use (DefaultVerifyOptions: ExtKeyUsageClientAuth);
    # Go takes a certificate without the extension as good for any use, and so does OpenSSL.
    pki = sandbox.kubeconfig.parent / "pki"
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    now = dt.datetime.now(dt.UTC)
    answers = {}
    for usage in ("serverAuth", "clientAuth", "none"):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, ADMIN),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
            ]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(hours=1))
        )
        oids = {
            "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
            "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
        }
        if usage in oids:
            builder = builder.add_extension(x509.ExtendedKeyUsage([oids[usage]]), critical=False)
        cert, key_file = tmp_path / f"{usage}.crt", tmp_path / f"{usage}.key"
        cert.write_bytes(
            builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        )
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        with _client(sandbox, (cert, key_file)) as client:
            answers[usage] = client.get(PODS).status_code
    assert answers == {"serverAuth": 401, "clientAuth": 200, "none": 200}


def test_the_sandbox_certificate_is_the_admin_without_a_token(
    sandbox: RunningSandbox,
) -> None:
    config = yaml.safe_load(sandbox.kubeconfig.read_text())
    user = next(u["user"] for u in config["users"] if u["name"] == "kube-llm-sandbox-cert")
    with _client(sandbox, (Path(user["client-certificate"]), Path(user["client-key"]))) as client:
        assert client.get(f"/api/v1/namespaces/{NAMESPACE}/secrets").status_code == 404
        assert client.get(PODS).status_code == 200
        assert _whoami(client)["username"] == ADMIN
        # A verified certificate authenticates before tokens, so a bad token beside it is unread.
        client.headers["Authorization"] = "Bearer not-a-token"
        assert client.get(PODS).status_code == 200


def _port(sandbox: RunningSandbox) -> int:
    return int(sandbox.server.rsplit(":", 1)[1].rstrip("/"))


def test_plain_http_to_the_tls_port_is_told_so(sandbox: RunningSandbox) -> None:
    # Go's HTTP server answers a request line where a TLS record should start with this 400.
    with socket.create_connection(("127.0.0.1", _port(sandbox)), timeout=10) as sock:
        sock.sendall(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer == (
        b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
    )
    with sandbox.http() as admin:
        assert admin.get(PODS).status_code == 200


def test_a_stalled_handshake_holds_up_no_one(sandbox: RunningSandbox) -> None:
    with socket.create_connection(("127.0.0.1", _port(sandbox)), timeout=10) as stalled:
        stalled.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello's first bytes, then nothing
        with sandbox.http() as admin:
            assert admin.get(PODS).status_code == 200
        with socket.create_connection(("127.0.0.1", _port(sandbox)), timeout=10) as garbage:
            garbage.sendall(b"\x16\x03\x01\x00\x05hello")  # a record that is no handshake
            assert garbage.recv(4096)[:1] in (b"\x15", b"")  # an alert, or closed
    with sandbox.http() as admin:
        assert admin.get(PODS).status_code == 200
    assert "Traceback" not in sandbox.log()
    assert json.loads(sandbox.kubectl("version", "-o", "json").stdout)["serverVersion"]
