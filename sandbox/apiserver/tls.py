"""The API server's TLS: a client certificate is asked for, checked by OpenSSL, and judged per
request, never by ending the handshake.

What upstream does. kube-apiserver asks every client for a certificate and takes whatever comes
(Go's `tls.RequestClientCert`, set in k8s.io/apiserver's `secure_serving.go` when a client CA
is configured), naming that CA in its request (`ClientCAs`), so a client choosing among several
certificates can offer the one the CA signed (kubectl offers its one certificate regardless:
client-go hands it over through `GetClientCertificate`). The certificate is verified per
request by the x509 authenticator (`k8s.io/apiserver/pkg/authentication/request/x509`) against
the client CA, for client use, at the current time; a failure is that authenticator's error,
and the request is a 401 unless a bearer token succeeds (`sandbox.apiserver.auth`).

Why this module exists. Python's `ssl` cannot ask for a certificate without verifying it in the
handshake: with `CERT_OPTIONAL` a certificate from another CA, or an expired one, ends the
handshake, and it has no verify callback to change that. So the API server runs TLS with
pyOpenSSL over memory buffers, as an asyncio protocol between the socket and uvicorn's HTTP
protocol, which sees it as its transport:

- OpenSSL verifies a presented chain against the sandbox's CA (signatures, dates, and the
  purpose a TLS client certificate must allow); the verify callback only records what OpenSSL
  found and lets the handshake go on, as `RequestClientCert` does;
- the HTTP protocol reads the outcome as a `ClientCertificate` from
  `get_extra_info(CLIENT_CERTIFICATE)`.

A certificate counts as verified only when the callback saw its chain with no error at any
depth. A resumed TLS session would skip the callback, so sessions are never resumed (no session
cache, no tickets), and a certificate the callback did not see counts as unverified. Go's
server never renegotiates, and neither does this one.

A client that sends plain HTTP where the handshake should start gets the 400 that Go's HTTP
server writes for it (`net/http`, `tlsRecordHeaderLooksLikeHTTP`), in clear; any other broken
handshake just closes the connection, after OpenSSL's alert if it has one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

CLIENT_CERTIFICATE = "kube_llm_client_certificate"
"""`get_extra_info` key of the connection's `ClientCertificate` (None when none was presented)."""

HANDSHAKE_TIMEOUT = 60.0
"""Seconds a client may take to finish the handshake (asyncio's `ssl_handshake_timeout`)."""

_CHUNK = 256 * 1024
"""Largest piece read out of OpenSSL at once, plaintext or ciphertext."""

_HTTP_NOT_TLS = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
_HTTP_STARTS = (b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO")
"""The five bytes Go takes as an HTTP request where a TLS record header should be."""


@dataclass(frozen=True)
class ClientCertificate:
    """The certificate a client presented, and whether it verified against the sandbox's CA."""

    common_name: str
    organizations: tuple[str, ...]
    verified: bool
    error: int = 0
    """OpenSSL's first verification error (`X509_V_ERR_*`); 0 when verified."""


def server_context(cert: Path, key: Path, client_ca: Path) -> SSL.Context:
    """The API server's TLS settings: its certificate, and client certificates asked for,
    verified against `client_ca` and never a reason to end the handshake."""
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)  # the API server's default minimum
    context.use_certificate_chain_file(str(cert))
    context.use_privatekey_file(str(key))
    context.check_privatekey()
    context.load_verify_locations(str(client_ca))
    context.load_client_ca(str(client_ca).encode())  # named in the CertificateRequest
    context.set_verify(SSL.VERIFY_PEER, _record_verification)
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    context.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_RENEGOTIATION)
    return context


def _record_verification(
    connection: SSL.Connection, _certificate: Any, error: int, _depth: int, ok: int
) -> bool:
    """OpenSSL's verdict on one certificate of the chain, kept; the handshake goes on."""
    layer = connection.get_app_data()
    assert isinstance(layer, TlsProtocol)
    layer.note_verification(0 if ok else error)
    return True


def _names(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(attribute.value) for attribute in name.get_attributes_for_oid(oid)]


def serving(context: SSL.Context, inner: Callable[..., asyncio.Protocol]) -> type[asyncio.Protocol]:
    """A protocol class for uvicorn's `http=`: TLS with `context` around `inner(**kwargs)`,
    made with the keyword arguments uvicorn passes (config, server_state, app_state)."""

    class Tls(TlsProtocol):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(context, lambda: inner(**kwargs))

    return Tls


class TlsProtocol(asyncio.Protocol, asyncio.Transport):
    """TLS over one socket: the socket's protocol, and the transport of the HTTP protocol it
    starts once the handshake is done."""

    def __init__(self, context: SSL.Context, inner: Callable[[], asyncio.Protocol]) -> None:
        super().__init__()
        self._tls = SSL.Connection(context, None)
        self._tls.set_app_data(self)
        self._tls.set_accept_state()
        self._make_inner = inner
        self._inner: asyncio.Protocol | None = None
        self._socket: asyncio.Transport | None = None
        self._closing = False
        self._checked = False
        self._verify_error = 0
        self._certificate: ClientCertificate | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._first_bytes = b""

    def note_verification(self, error: int) -> None:
        """One verify callback: `error` is 0 when OpenSSL found that certificate good."""
        self._checked = True
        if error and not self._verify_error:
            self._verify_error = error

    # The socket's side.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A socket transport (uvloop's are no subclasses of asyncio's, so never isinstance).
        self._socket = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        self._handshake_timer = loop.call_later(HANDSHAKE_TIMEOUT, self._socket.abort)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._tls.bio_write(data)
        if self._inner is None:
            if len(self._first_bytes) < 5:
                self._first_bytes += data[: 5 - len(self._first_bytes)]
            if not self._handshake():
                return
        self._deliver()

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            self._inner.eof_received()
        return False  # a TLS connection cannot stay half-open: close it

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._tls.set_app_data(None)  # the callback's way back here: a cycle, no longer needed
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def _handshake(self) -> bool:
        """Go on with the handshake; True once done and the HTTP protocol has started."""
        try:
            self._tls.do_handshake()
        except SSL.WantReadError:
            self._send_tls()
            return False
        except SSL.Error:
            # Not TLS, or a handshake the client broke off: nothing to serve on it.
            self._closing = True
            assert self._socket is not None
            if self._first_bytes in _HTTP_STARTS:
                self._socket.write(_HTTP_NOT_TLS)
            else:
                self._send_tls()  # OpenSSL's alert, if it made one
            self._socket.close()
            return False
        self._send_tls()
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        self._certificate = self._peer_certificate()
        self._inner = self._make_inner()
        self._inner.connection_made(self)
        return True

    def _peer_certificate(self) -> ClientCertificate | None:
        peer = self._tls.get_peer_certificate(as_cryptography=True)
        if peer is None:
            return None
        common_names = _names(peer.subject, NameOID.COMMON_NAME)
        return ClientCertificate(
            # Go's pkix.Name keeps the last CN of a subject, and every O.
            common_name=common_names[-1] if common_names else "",
            organizations=tuple(_names(peer.subject, NameOID.ORGANIZATION_NAME)),
            verified=self._checked and not self._verify_error,
            error=self._verify_error,
        )

    def _deliver(self) -> None:
        """Hand every decrypted byte to the HTTP protocol."""
        while not self._closing and self._inner is not None:
            try:
                data = self._tls.recv(_CHUNK)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:  # the client's close_notify
                self._inner.eof_received()
                self.close()
                return
            except SSL.Error:
                self.abort()  # a record that does not decrypt: the connection is broken
                return
            self._inner.data_received(data)
        self._send_tls()  # what reading produced (TLS 1.3 key updates)

    def _send_tls(self) -> None:
        """Write out whatever OpenSSL has made for the socket."""
        chunks: list[bytes] = []
        while True:
            try:
                chunks.append(self._tls.bio_read(_CHUNK))
            except SSL.WantReadError:
                break
        if chunks and self._socket is not None and not self._socket.is_closing():
            self._socket.writelines(chunks)

    # The HTTP protocol's transport.

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        self._tls.sendall(bytes(data))
        self._send_tls()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS has no half-close")

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        # A session that failed already has no close_notify to send.
        with contextlib.suppress(SSL.Error):
            self._tls.shutdown()  # queues close_notify
        self._send_tls()
        assert self._socket is not None
        self._socket.close()

    def abort(self) -> None:
        self._closing = True
        assert self._socket is not None
        self._socket.abort()

    def is_closing(self) -> bool:
        return self._closing or (self._socket is not None and self._socket.is_closing())

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == CLIENT_CERTIFICATE:
            return self._certificate
        if name == "sslcontext":  # uvicorn's scope scheme is https when this is truthy
            return self._tls.get_context()
        assert self._socket is not None
        return self._socket.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._inner = cast(asyncio.Protocol, protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._inner is not None
        return self._inner

    def pause_reading(self) -> None:
        assert self._socket is not None
        self._socket.pause_reading()

    def resume_reading(self) -> None:
        assert self._socket is not None
        self._socket.resume_reading()

    def is_reading(self) -> bool:
        return self._socket is not None and self._socket.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        assert self._socket is not None
        self._socket.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return 0 if self._socket is None else self._socket.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        assert self._socket is not None
        return self._socket.get_write_buffer_limits()
