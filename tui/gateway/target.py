"""Where the gateway is, and the credentials that go with it (never shown).

A `GatewayTarget` is one origin: the Service through the API server's service proxy (with each
pod through the pod proxy), or a backend URL reached directly. Names that go into a URL path are
checked first, so a hostile pod name cannot walk to another API path.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx2

from tui.gateway.auth import HeaderSource

__all__ = ["BACKEND_PORT", "GatewayError", "GatewayTarget", "ssl_context_for"]

BACKEND_PORT = 8000
"""The backend container's port. The API server's pod proxy takes a number here (it does not
resolve a pod's port names), so the pod proxy URL names 8000, not `http`."""

# Kubernetes object names (DNS-1123 subdomain) and namespaces/services (DNS-1123 label): checked
# before they go into a URL path, so a hostile name cannot walk to another API path.
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PORT_NAME = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?|[0-9]{1,5})$")


class GatewayError(Exception):
    """A request to the gateway or a pod failed; `kind` is a short machine word.

    Kinds: `connect`, `timeout`, `network`, `http_<code>`, `protocol`, `parse`, `no_pod_proxy`.
    `detail` is the server's own words when it gave any (untrusted text).
    """

    def __init__(self, kind: str, detail: str = "", status: int | None = None) -> None:
        """Describe a failure of `kind`, with the server's `detail` and HTTP `status`."""
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail
        self.status = status


def _check_name(what: str, value: str, pattern: re.Pattern[str], limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit or not pattern.match(value):
        raise ValueError(f"{what} {value!r} is not a valid Kubernetes name")
    return value


def _check_base_url(what: str, url: str) -> str:
    try:
        parsed = httpx2.URL(url)
    except (httpx2.InvalidURL, TypeError) as error:
        raise ValueError(f"{what} {url!r} is not a URL: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"{what} must be an http:// or https:// URL with a host, not {url!r}")
    return url.rstrip("/")


def _redact(url: str) -> str:
    """The URL without any user:password part, for display."""
    parsed = httpx2.URL(url)
    if not parsed.userinfo:
        return url
    return str(parsed.copy_with(username=None, password=None))


@dataclass(frozen=True)
class GatewayTarget:
    """Where the gateway is and how to reach it; credentials are never part of its repr.

    `base_url` is the Service (or a backend URL); `pod_proxy`, when set, is a URL with a `{pod}`
    placeholder that reaches one pod's backend port (the API server's pod proxy). `headers`,
    `verify` and `cert` go with every request to this target and nowhere else.
    """

    base_url: str
    pod_proxy: str | None = None
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    verify: ssl.SSLContext | bool = field(default=True, repr=False)
    cert: tuple[str, str | None] | None = field(default=None, repr=False)
    """Client certificate and key file paths, for a kubeconfig with client-certificate auth."""
    auth: HeaderSource | None = field(default=None, repr=False, compare=False)
    """Credentials read at each request (and renewed after a 401), beside `headers`."""

    def __post_init__(self) -> None:
        """Check the URLs, so a bad `--backend-url` is a clear error and not a traceback."""
        object.__setattr__(self, "base_url", _check_base_url("the backend URL", self.base_url))
        if self.pod_proxy is not None:
            probe = self.pod_proxy.replace("{pod}", "pod")
            _check_base_url("the pod proxy URL", probe)

    def __repr__(self) -> str:
        """Show where the target is, with header names but never their values."""
        names = ", ".join(name for name, _ in self.headers)
        return (
            f"GatewayTarget(base_url={_redact(self.base_url)!r}, pod_proxy="
            f"{None if self.pod_proxy is None else _redact(self.pod_proxy)!r}, "
            f"headers=[{names}], client_cert={self.cert is not None}, "
            f"renewed_auth={self.auth is not None})"
        )

    @property
    def display_url(self) -> str:
        """The Service URL without credentials, for the UI."""
        return _redact(self.base_url)

    @classmethod
    def through_service_proxy(
        cls,
        server: str,
        namespace: str,
        service: str = "llm-backend",
        headers: Mapping[str, str] | None = None,
        verify: ssl.SSLContext | bool = True,
        cert: tuple[str, str | None] | None = None,
        *,
        port: str = "http",
        pod_port: int = BACKEND_PORT,
        auth: HeaderSource | None = None,
    ) -> GatewayTarget:
        """The Service through the API server at `server`, and each pod through its pod proxy."""
        server = _check_base_url("the API server URL", server)
        _check_name("namespace", namespace, _LABEL, 63)
        _check_name("service", service, _LABEL, 63)
        _check_name("service port", port, _PORT_NAME, 15)
        if not 0 < pod_port < 65536:
            raise ValueError(f"pod port {pod_port} is out of range")
        prefix = f"{server}/api/v1/namespaces/{namespace}"
        return cls(
            base_url=f"{prefix}/services/{service}:{port}/proxy",
            pod_proxy=f"{prefix}/pods/{{pod}}:{pod_port}/proxy",
            headers=tuple((headers or {}).items()),
            verify=verify,
            cert=cert,
            auth=auth,
        )

    @classmethod
    def direct(
        cls,
        url: str,
        *,
        pod_proxy: str | None = None,
        headers: Mapping[str, str] | None = None,
        verify: ssl.SSLContext | bool = True,
        cert: tuple[str, str | None] | None = None,
    ) -> GatewayTarget:
        """A backend URL reached directly (a NodePort, an Ingress, a port-forward)."""
        return cls(
            base_url=url,
            pod_proxy=pod_proxy,
            headers=tuple((headers or {}).items()),
            verify=verify,
            cert=cert,
        )

    def pod_url(self, pod: str) -> str:
        """The URL of one pod's backend, through the pod proxy."""
        if self.pod_proxy is None:
            raise GatewayError("no_pod_proxy", "this target has no pod proxy")
        _check_name("pod", pod, _SUBDOMAIN, 253)
        return self.pod_proxy.replace("{pod}", pod)


def ssl_context_for(target: GatewayTarget) -> ssl.SSLContext | bool:
    """The TLS settings for a target; a client certificate needs a context to carry it."""
    if target.cert is None:
        return target.verify
    if isinstance(target.verify, ssl.SSLContext):
        context = target.verify
    elif target.verify:
        context = ssl.create_default_context()
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    certfile, keyfile = target.cert
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ValueError(f"cannot load the client certificate {certfile!r}: {reason}") from None
    return context
