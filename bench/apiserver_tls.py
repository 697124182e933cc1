"""The cost of the API server's own TLS layer (issue 14): pyOpenSSL over memory buffers against
the stdlib `ssl` uvicorn the sandbox used before, same app, same requests, in one run.

Starts two API servers (the sandbox's app on a store of `--objects` ConfigMaps of 1 KiB, no
kubelet), each a process of its own: `stdlib` (uvicorn's `ssl_*` settings, `CERT_OPTIONAL`,
as before) and `openssl` (`sandbox/apiserver/tls.py`). The client authenticates with the
sandbox admin's client certificate, so every handshake verifies it (and a token, which only the
stdlib server reads: its app cannot see certificates). The servers take turns in
rounds (the order alternating), so a neighbour's burst of CPU falls on both alike; per part it
prints the median wall time and the server's CPU (user+sys) per operation, openssl/stdlib
ratios, and the load average before and after (the machine may be shared: compare the two
servers of one run, not runs).

Parts: `get` sequential small GETs on one keep-alive connection; `connect` a new connection
(handshake with the client certificate) and one GET each; `list` the whole ConfigMap list
(about 1.3 KiB per object as JSON); `watch` a watch replaying every ConfigMap's ADDED event
from the store's history, read to the last event.

    .venv/bin/python bench/apiserver_tls.py [--gets 1000] [--connects 100] [--lists 10]
                                            [--watches 5] [--objects 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import psutil

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
TOKEN = "bench-token"
KINDS = ("stdlib", "openssl")


def serve(kind: str, port: int, pki_dir: Path, objects: int) -> None:
    """One API server: the sandbox's app on a store of ConfigMaps, with `kind` TLS."""
    import uvicorn

    from sandbox.apiserver.auth import Authenticator
    from sandbox.apiserver.protocol import ApiServerProtocol
    from sandbox.apiserver.server import ApiServer, create_app
    from sandbox.apiserver.tls import server_context, serving
    from sandbox.store.store import CONFIGMAPS, Store

    class NoPods:
        def pod_port(self, namespace: str, pod: str, port: str | int) -> int | None:
            return None

        def pod_metrics(self, namespace: str | None) -> list[dict[str, Any]]:
            return []

        def log_path(self, namespace: str, pod: str, container: str | None) -> Path | None:
            return None

        def custom_metrics(
            self, namespace: str, metric: str, pods: list[str], metric_selector: str | None
        ) -> dict[str, Any]:
            return {}

    store = Store(history_size=objects + 10)
    for number in range(objects):
        body = {"metadata": {"name": f"cm-{number}"}, "data": {"value": "x" * 1024}}
        store.create(CONFIGMAPS, body, NAMESPACE)
    app = create_app(ApiServer(store, NoPods(), Authenticator(TOKEN)))
    tls: dict[str, Any]
    if kind == "stdlib":
        tls = {
            "http": ApiServerProtocol,
            "ssl_certfile": str(pki_dir / "server.crt"),
            "ssl_keyfile": str(pki_dir / "server.key"),
            "ssl_cert_reqs": ssl.CERT_OPTIONAL,
            "ssl_ca_certs": str(pki_dir / "ca.crt"),
        }
    else:
        context = server_context(pki_dir / "server.crt", pki_dir / "server.key", pki_dir / "ca.crt")
        tls = {"http": serving(context, ApiServerProtocol)}
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, **tls
    )
    uvicorn.Server(config).run()


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server process and a client for it."""

    def __init__(self, kind: str, pki_dir: Path, objects: int) -> None:
        self.kind = kind
        self.objects = objects
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, __file__, "serve", kind, str(self.port), str(pki_dir)]
        self.process = subprocess.Popen([*command, str(objects)], cwd=ROOT, env=env)
        self.ps = psutil.Process(self.process.pid)
        self.context = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
        self.context.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
        self.url = f"https://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the {kind} server exited with {self.process.returncode}")
            try:
                with self.client() as client:
                    if client.get("/version").status_code == 200:
                        return
            except httpx2.TransportError:
                time.sleep(0.2)
        self.stop()
        raise SystemExit(f"the {kind} server did not answer")

    def client(self) -> httpx2.Client:
        """A client with the admin's certificate, and a token for the stdlib server, whose
        certificates the app cannot see (its handshake verified this one already)."""
        headers = {"Authorization": f"Bearer {TOKEN}"}
        return httpx2.Client(base_url=self.url, verify=self.context, headers=headers, timeout=60)

    def cpu(self) -> float:
        """The server's CPU seconds so far (user+sys)."""
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        """End the server process."""
        self.process.terminate()
        self.process.wait(30)


def part_get(server: Server, count: int) -> int:
    with server.client() as client:
        for _ in range(count):
            client.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps/cm-0").raise_for_status()
    return count


def part_connect(server: Server, count: int) -> int:
    for _ in range(count):
        with server.client() as client:
            client.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps/cm-0").raise_for_status()
    return count


def part_list(server: Server, count: int) -> int:
    with server.client() as client:
        for _ in range(count):
            response = client.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps")
            response.raise_for_status()
            assert len(response.content) > server.objects * 1024
    return count


def part_watch(server: Server, count: int) -> int:
    params = {"watch": "1", "resourceVersion": "0", "timeoutSeconds": "60"}
    with server.client() as client:
        for _ in range(count):
            seen = 0
            path = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
            with client.stream("GET", path, params=params) as got:
                for line in got.iter_lines():
                    if line and json.loads(line)["type"] == "ADDED":
                        seen += 1
                        if seen == server.objects:
                            break
            if seen != server.objects:
                raise SystemExit(f"a watch ended after {seen} of {server.objects} events")
    return count


def measure(server: Server, part: Callable[[Server, int], int], count: int) -> tuple[float, float]:
    """Wall seconds and server CPU seconds per operation of one run of `part`."""
    cpu, start = server.cpu(), time.perf_counter()
    done = part(server, count)
    return (time.perf_counter() - start) / done, (server.cpu() - cpu) / done


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gets", type=int, default=1000)
    parser.add_argument("--connects", type=int, default=100)
    parser.add_argument("--lists", type=int, default=10)
    parser.add_argument("--watches", type=int, default=5)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from sandbox.pki import make_pki

    pki_dir = Path(tempfile.mkdtemp(prefix="apiserver-tls-")) / "pki"
    make_pki(pki_dir)
    print(
        f"gets {args.gets}, connects {args.connects}, lists {args.lists} of {args.objects} "
        f"ConfigMaps, {args.watches} watches of {args.objects} events, {args.rounds} rounds; "
        f"{os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    parts: list[tuple[str, str, Callable[[Server, int], int], int]] = [
        ("get", "keep-alive GET", part_get, args.gets),
        ("connect", "new connection + GET", part_connect, args.connects),
        ("list", f"list of {args.objects}", part_list, args.lists),
        ("watch", f"watch of {args.objects} events", part_watch, args.watches),
    ]
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    servers: dict[str, Server] = {}
    try:
        for kind in KINDS:
            servers[kind] = Server(kind, pki_dir, args.objects)
        for round_number in range(args.rounds):
            order = KINDS if round_number % 2 == 0 else KINDS[::-1]
            for name, _title, part, count in parts:
                for kind in order:
                    samples.setdefault((name, kind), []).append(measure(servers[kind], part, count))
    finally:
        for server in servers.values():
            server.stop()
    print(
        f"{'part':<26}{'stdlib ms':>11}{'openssl ms':>12}{'ratio':>7}"
        f"{'stdlib CPU ms':>15}{'openssl CPU ms':>16}{'ratio':>7}"
    )
    for name, title, _part, _count in parts:
        wall = {k: statistics.median(s[0] for s in samples[name, k]) * 1e3 for k in KINDS}
        cpu = {k: statistics.median(s[1] for s in samples[name, k]) * 1e3 for k in KINDS}
        print(
            f"{title:<26}{wall['stdlib']:>11.2f}{wall['openssl']:>12.2f}"
            f"{wall['openssl'] / wall['stdlib']:>7.2f}"
            f"{cpu['stdlib']:>15.2f}{cpu['openssl']:>16.2f}"
            f"{cpu['openssl'] / max(cpu['stdlib'], 1e-9):>7.2f}"
        )
    print(f"load {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
