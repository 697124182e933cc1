"""The sandbox kubeconfig's exec credential plugin (`client.authentication.k8s.io/v1`).

kubectl and the official clients run it when they need a token, as they run `aws eks
get-token` or `gke-gcloud-auth-plugin`: it prints an `ExecCredential` whose token expires after
`--expiration-seconds`, so every client of the sandbox can be tried against expiring tokens. It
gets the token from the sandbox (`POST /sandbox/token`), proving who it is with the admin's
client certificate, as a cloud plugin proves it with the cloud's credentials. Only the standard
library: clients start it often, and it must start fast.

    python -m sandbox.credential --server https://127.0.0.1:PORT --certificate-authority CA \\
        --client-certificate CRT --client-key KEY --expiration-seconds 60
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import sys
from urllib.parse import urlsplit


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.credential",
        description="Print an ExecCredential with a short-lived token for the kube-llm sandbox.",
    )
    parser.add_argument("--server", required=True, help="the sandbox's API server URL")
    parser.add_argument("--certificate-authority", required=True, help="the sandbox's CA file")
    parser.add_argument("--client-certificate", required=True, help="the admin's certificate")
    parser.add_argument("--client-key", required=True, help="the admin's key")
    parser.add_argument(
        "--expiration-seconds", type=int, default=600, help="token lifetime (default: 600)"
    )
    return parser.parse_args(argv)


def fetch(arguments: argparse.Namespace) -> str:
    """The ExecCredential JSON the sandbox hands out; raises OSError or ValueError."""
    context = ssl.create_default_context(cafile=arguments.certificate_authority)
    context.load_cert_chain(arguments.client_certificate, arguments.client_key)
    parts = urlsplit(arguments.server)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"--server must be an https:// URL, not {arguments.server!r}")
    connection = http.client.HTTPSConnection(
        parts.hostname, parts.port or 443, context=context, timeout=10
    )
    try:
        body = json.dumps({"expirationSeconds": arguments.expiration_seconds})
        connection.request("POST", "/sandbox/token", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        text = response.read().decode()
    finally:
        connection.close()
    if response.status != 200:
        raise ValueError(f"the sandbox refused a token ({response.status}): {text[:300]}")
    credential = json.loads(text)
    if credential.get("kind") != "ExecCredential":
        raise ValueError("the sandbox answered something other than an ExecCredential")
    return text


def main(argv: list[str] | None = None) -> int:
    """Print the credential; on failure, say why on stderr (kubectl shows it) and exit 1."""
    arguments = _arguments(argv)
    try:
        print(fetch(arguments))
    except (OSError, ValueError) as error:
        print(f"kube-llm sandbox credential plugin: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
