"""Start `python -m sandbox` as a real process and talk to it the way users do."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "kube-llm"
SELECTOR = "app.kubernetes.io/name=llm-backend"
KUBECTL = Path(sys.executable).parent / "kubectl"


def fake_engine_cmd(
    busy_ms_per_token: float = 5, token_delay: float = 0.0, tokens: int = 12
) -> str:
    """The fake engine as a sandbox `--engine-cmd`."""
    return (
        "python -m tests.fakes.engine --host 127.0.0.1 --port {port} --model {model} "
        f"--busy-ms-per-token {busy_ms_per_token} --token-delay {token_delay} --tokens {tokens}"
    )


T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2
) -> T:
    """Poll until `predicate` returns something truthy; fail with `what` after `timeout`.

    A predicate may return None for "not yet"; what comes back is never None.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as error:  # a poll may race a change: keep polling
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def stop_process(process: subprocess.Popen[str], sig: int, timeout: float = 30) -> int:
    """Send `sig` to a process still running and wait for it; its exit code (SIGKILLed, and the
    timeout raised, when it outlives `timeout`)."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@dataclass
class RunningSandbox:
    """A sandbox process and what a client needs to reach it."""

    process: subprocess.Popen[str]
    kubeconfig: Path
    output: Path
    server: str = ""
    token: str = ""
    ca_file: Path = field(default_factory=Path)

    def load(self) -> None:
        """Read the server, token and CA from the written kubeconfig."""
        config = yaml.safe_load(self.kubeconfig.read_text())
        self.server = config["clusters"][0]["cluster"]["server"]
        self.token = config["users"][0]["user"]["token"]
        self.ca_file = self.kubeconfig.parent / "test-ca.crt"
        self.ca_file.write_bytes(
            base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
        )

    def http(self, token: str | None = None) -> httpx2.Client:
        """An HTTP client for the API server (the kubeconfig's token unless given)."""
        chosen = self.token if token is None else token
        headers = {"Authorization": f"Bearer {chosen}"} if chosen else {}
        verify = ssl.create_default_context(cafile=str(self.ca_file))
        return httpx2.Client(base_url=self.server, headers=headers, verify=verify, timeout=30)

    def deployment_replicas(self) -> int:
        """The Deployment's spec.replicas (what the HPA last set)."""
        with self.http() as http:
            deployment = http.get(
                f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/llm-backend"
            ).json()
        replicas: int = deployment["spec"]["replicas"]
        return replicas

    @contextlib.contextmanager
    def chat_users(self, count: int) -> Iterator[list[int]]:
        """`count` users chatting through the Service back to back while the block runs;
        yields the unexpected status codes (anything but 200 and 429) they got."""
        stop = threading.Event()
        failures: list[int] = []

        def user() -> None:
            with self.http() as http:
                while not stop.is_set():
                    response = http.post(
                        f"/api/v1/namespaces/{NAMESPACE}/services/llm-backend:http/proxy"
                        "/v1/chat/completions",
                        json={
                            "model": "smollm2:135m",
                            "messages": [{"role": "user", "content": "go"}],
                        },
                        timeout=60,
                    )
                    if response.status_code not in (200, 429):
                        failures.append(response.status_code)

        users = [threading.Thread(target=user, daemon=True) for _ in range(count)]
        for thread in users:
            thread.start()
        try:
            yield failures
        finally:
            stop.set()
            for thread in users:
                thread.join(60)

    def kubectl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run kubectl (from the venv) with the written kubeconfig."""
        return subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def pods(self) -> list[dict[str, Any]]:
        """The pods of the sandbox's Deployment."""
        with self.http() as client:
            response = client.get(
                f"/api/v1/namespaces/{NAMESPACE}/pods", params={"labelSelector": SELECTOR}
            )
            response.raise_for_status()
            items: list[dict[str, Any]] = response.json()["items"]
            return items

    def ready_pods(self) -> list[str]:
        """Names of Ready pods that are not terminating."""
        return [
            pod["metadata"]["name"]
            for pod in self.pods()
            if not pod["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in pod.get("status", {}).get("conditions", [])
            )
        ]

    def descendants(self) -> list[psutil.Process]:
        """Every live process the sandbox started (recursively)."""
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM the sandbox and wait for it; its exit code."""
        return stop_process(self.process, signal.SIGTERM, timeout)

    def diagnosis(self) -> str:
        """The sandbox's output, pod states and the tail of every container log."""
        parts = [f"sandbox output:\n{self.log()[-2000:]}"]
        kubectl = self.kubectl("get", "pods,events", "-n", NAMESPACE)
        parts.append(f"kubectl get pods,events:\n{kubectl.stdout}{kubectl.stderr}")
        # Each run logs into logs/run-*/ (logs/latest is the newest).
        for path in sorted((self.kubeconfig.parent / "logs").glob("run-*/*.log")):
            parts.append(f"{path.name}:\n{path.read_text(errors='replace')[-1500:]}")
        return "\n".join(parts)

    def log(self) -> str:
        """What the sandbox printed."""
        return self.output.read_text() if self.output.exists() else ""


def start_sandbox(
    directory: Path,
    *args: str,
    engine_cmd: str | None = None,
    ready_pods: int = 2,
    timeout: float = 90,
) -> RunningSandbox:
    """Start `python -m sandbox` from the project root and wait for `ready_pods` Ready pods."""
    directory.mkdir(parents=True, exist_ok=True)
    kubeconfig = directory / "kubeconfig"
    output = directory / "sandbox.out"
    command = [sys.executable, "-m", "sandbox", "--kubeconfig", str(kubeconfig), *args]
    if engine_cmd is not None:
        command += ["--engine-cmd", engine_cmd]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with output.open("w") as sink:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, text=True, env=env
        )
    sandbox = RunningSandbox(process, kubeconfig, output)

    def configured() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the sandbox exited early:\n{sandbox.log()}")
        return kubeconfig.exists() and "kubectl --kubeconfig" in sandbox.log()

    try:
        wait_for(configured, 30, "the kubeconfig and the banner")
        sandbox.load()
        if ready_pods:
            try:
                wait_for(
                    lambda: len(sandbox.ready_pods()) >= ready_pods,
                    timeout,
                    f"{ready_pods} Ready pods",
                )
            except AssertionError as error:
                raise AssertionError(f"{error}\n{sandbox.diagnosis()}") from None
    except BaseException:
        sandbox.stop()
        raise
    return sandbox
