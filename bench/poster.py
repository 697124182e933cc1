"""The poster's numbers, measured on a live sandbox with the real model.

The project began from a poster of test results (TinyLlama on Minikube): 76 ms health checks,
10+ concurrent users, recovery under 30 s, chat replies that took about 173 s. This starts
`python -m sandbox` (SmolLM2-135M on llama-cpp-python in every pod, unless --engine-cmd) and
measures each of those through the API server's service proxy, the way a user reaches it:

1. health: sequential GET /healthz and /readyz through the Service;
2. users: N concurrent users, each sending streamed chats back to back (a 429 is honoured
   with its Retry-After, as a well-behaved client does, and counted; times include the wait);
3. recovery: while users keep chatting, a Ready pod is deleted; time from the DELETE to its
   replacement being Ready, and how many chats failed meanwhile.

    .venv/bin/python bench/poster.py [--users 10] [--chats 3] [--health 200]

A benchmark run by hand, not a test: it prints each number next to the poster's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sandbox.harness import NAMESPACE, RunningSandbox, start_sandbox

SERVICE = f"/api/v1/namespaces/{NAMESPACE}/services/llm-backend:http/proxy"
OVERLAY = Path(__file__).resolve().parents[1] / "kustomize" / "overlays" / "sandbox"
POSTER_HEALTH_MS = 76.0
POSTER_USERS = 10
POSTER_RECOVERY_S = 30.0
POSTER_CHAT_S = 173.0
PROMPTS = (
    "What is the capital of France?",
    "Give me three tips for sleeping well.",
    "Explain what a Kubernetes pod is in two sentences.",
    "Write a haiku about autumn.",
)


@dataclass
class Chat:
    """One streamed chat as the user saw it."""

    status: int
    ttft: float | None = None
    seconds: float = 0.0
    tokens: int = 0
    error: str | None = None
    retries: int = 0


@dataclass
class Tally:
    """Every chat of a phase."""

    chats: list[Chat] = field(default_factory=list)

    def ok(self) -> list[Chat]:
        """Chats that ended with a whole reply."""
        return [c for c in self.chats if c.status == 200 and c.error is None]


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def client_for(sandbox: RunningSandbox) -> httpx2.AsyncClient:
    """An async client to the sandbox's API server with its token and CA."""
    return httpx2.AsyncClient(
        base_url=sandbox.server,
        headers={"Authorization": f"Bearer {sandbox.token}"},
        verify=ssl.create_default_context(cafile=str(sandbox.ca_file)),
        timeout=httpx2.Timeout(120, connect=10),
        limits=httpx2.Limits(max_connections=64, max_keepalive_connections=64),
    )


async def chat_once(client: httpx2.AsyncClient, prompt: str, max_tokens: int) -> Chat:
    """One streamed chat; 429s are retried after their Retry-After."""
    body = {
        "model": "smollm2:135m",
        "stream": True,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
    }
    retries = 0
    started = time.perf_counter()  # what the user feels: 429 waits included
    while True:
        result = Chat(status=0, retries=retries)
        try:
            async with client.stream("POST", SERVICE + "/v1/chat/completions", json=body) as reply:
                result.status = reply.status_code
                if reply.status_code == 429 and retries < 20:
                    retries += 1
                    await asyncio.sleep(float(reply.headers.get("retry-after", "1")))
                    continue
                if reply.status_code != 200:
                    error_body = await reply.aread()
                    try:
                        code = json.loads(error_body)["error"]["code"]
                    except (ValueError, KeyError, TypeError):
                        code = error_body[:80].decode(errors="replace")
                    result.error = f"HTTP {reply.status_code} {code}"
                    return result
                finished = False
                async for line in reply.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    if "error" in event:
                        result.error = str(event["error"].get("code"))
                        break
                    choice = event["choices"][0] if event.get("choices") else {}
                    if choice.get("delta", {}).get("content"):
                        result.tokens += 1
                        if result.ttft is None:
                            result.ttft = time.perf_counter() - started
                    if choice.get("finish_reason"):
                        finished = True
                if not finished and result.error is None:
                    result.error = "truncated"
        except httpx2.HTTPError as error:
            result.error = type(error).__name__
        result.seconds = time.perf_counter() - started
        return result


async def user(client: httpx2.AsyncClient, index: int, chats: int, tally: Tally) -> None:
    """A user who sends `chats` chats back to back."""
    for turn in range(chats):
        tally.chats.append(await chat_once(client, PROMPTS[(index + turn) % len(PROMPTS)], 64))


async def health(client: httpx2.AsyncClient, path: str, count: int) -> list[float]:
    """Milliseconds of `count` sequential GETs of `path` through the Service."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = await client.get(SERVICE + path)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return samples


def ready_names(pods: list[dict[str, object]]) -> set[str]:
    """Names of Ready pods that are not terminating."""
    names = set()
    for pod in pods:
        meta = pod["metadata"]
        status = pod.get("status", {})
        assert isinstance(meta, dict)
        assert isinstance(status, dict)
        conditions = status.get("conditions", [])
        if not meta.get("deletionTimestamp") and any(
            c["type"] == "Ready" and c["status"] == "True" for c in conditions
        ):
            names.add(meta["name"])
    return names


async def recovery(client: httpx2.AsyncClient, users: int) -> tuple[float, Tally, str]:
    """Delete a Ready pod under load; seconds to a Ready replacement and the chats meanwhile."""
    pods_path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    selector = {"labelSelector": "app.kubernetes.io/name=llm-backend"}

    async def ready() -> set[str]:
        response = await client.get(pods_path, params=selector)
        response.raise_for_status()
        return ready_names(response.json()["items"])

    tally = Tally()
    stop = asyncio.Event()

    async def steady_user(index: int) -> None:
        turn = 0
        while not stop.is_set():
            tally.chats.append(await chat_once(client, PROMPTS[(index + turn) % 4], 32))
            turn += 1

    load = [asyncio.create_task(steady_user(i)) for i in range(users)]
    await asyncio.sleep(3)
    before = await ready()
    victim = sorted(before)[0]
    started = time.monotonic()
    (await client.delete(f"{pods_path}/{victim}")).raise_for_status()
    while not (await ready()) - before:  # noqa: ASYNC110 - polling the API, as a client does
        await asyncio.sleep(0.05)
    seconds = time.monotonic() - started
    await asyncio.sleep(3)
    stop.set()
    await asyncio.gather(*load)
    return seconds, tally, victim


def load() -> str:
    """The 1-minute load average, to print beside a figure: other work on the machine moves
    every timing, so a figure means little without it."""
    return f"load {os.getloadavg()[0]:.1f}"


def gateway_settings() -> dict[str, str]:
    """The backend settings the sandbox overlay's ConfigMap sets (the chats each pod runs)."""
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    settings: dict[str, str] = {}
    for generator in kustomization.get("configMapGenerator", []):
        for literal in generator.get("literals", []):
            name, _, value = str(literal).partition("=")
            settings[name] = value
    return settings


def line(what: str, poster: str, measured: str, verdict: str) -> str:
    """One row of the comparison table."""
    return f"| {what} | {poster} | {measured} | {verdict} |"


async def run(sandbox: RunningSandbox, args: argparse.Namespace) -> None:
    """All three phases, then the table."""
    async with client_for(sandbox) as client:
        print(f"health: {args.health} sequential GET /healthz and /readyz through the Service")
        health_load = load()
        healthz = await health(client, "/healthz", args.health)
        readyz = await health(client, "/readyz", args.health)
        health_load += f" -> {load()[5:]}"
        print(f"users: {args.users} concurrent users x {args.chats} streamed chats (64 tokens)")
        users_load = load()
        tally = Tally()
        started = time.perf_counter()
        await asyncio.gather(*(user(client, i, args.chats, tally) for i in range(args.users)))
        wall = time.perf_counter() - started
        users_load += f" -> {load()[5:]}"
        print(f"recovery: {args.recovery_users} users chatting while a Ready pod is deleted")
        recovery_load = load()
        recovered, during, victim = await recovery(client, args.recovery_users)
        recovery_load += f" -> {load()[5:]}"

    ok = tally.ok()
    e2e = [c.seconds for c in ok]
    ttft = [c.ttft for c in ok if c.ttft is not None]
    tokens_per_s = sum(c.tokens for c in ok) / wall
    retried = sum(c.retries for c in tally.chats)
    failed_during = [c for c in during.chats if c.status != 200 or c.error]
    failed_kinds = sorted({(c.error or str(c.status))[:60] for c in failed_during})
    print()
    print(
        f"health /healthz ms: p50 {pct(healthz, 50):.1f}  p99 {pct(healthz, 99):.1f}"
        f"  max {max(healthz):.1f}  ({health_load})"
    )
    print(
        f"health /readyz  ms: p50 {pct(readyz, 50):.1f}  p99 {pct(readyz, 99):.1f}"
        f"  max {max(readyz):.1f}  ({health_load})"
    )
    errors = sorted({c.error for c in tally.chats if c.error})
    print(f"chat errors: {', '.join(errors) or 'none'}")
    print(
        f"chats: {len(ok)}/{len(tally.chats)} whole replies in {wall:.1f} s, {retried} 429s "
        f"retried; TTFT p50 {pct(ttft, 50):.2f} s p95 {pct(ttft, 95):.2f} s; "
        f"end to end p50 {pct(e2e, 50):.2f} s p95 {pct(e2e, 95):.2f} s; "
        f"{tokens_per_s:.0f} tokens/s in all ({users_load})"
    )
    print(
        f"recovery: {victim} deleted -> replacement Ready in {recovered:.2f} s; "
        f"{len(failed_during)}/{len(during.chats)} chats failed meanwhile "
        f"({', '.join(failed_kinds) or 'none'}) ({recovery_load})"
    )
    print()
    print("| poster number | poster | kube-llm sandbox | ratio |")
    print("|---|---|---|---|")
    health_p50 = pct(healthz, 50)
    print(
        line(
            "health check (p50)",
            f"{POSTER_HEALTH_MS:.0f} ms",
            f"{health_p50:.1f} ms",
            f"{POSTER_HEALTH_MS / health_p50:.0f}x faster",
        )
    )
    served = len(ok) == len(tally.chats)
    print(
        line(
            "concurrent users",
            f"{POSTER_USERS}+",
            f"{args.users}, {'all served' if served else f'{len(tally.chats) - len(ok)} failed'}",
            f"{args.users / POSTER_USERS:.1f}x the users",
        )
    )
    print(
        line(
            "recovery after a pod kill",
            f"< {POSTER_RECOVERY_S:.0f} s",
            f"{recovered:.1f} s",
            f"{POSTER_RECOVERY_S / recovered:.0f}x faster",
        )
    )
    chat_p50 = pct(e2e, 50)  # the same p50 as the line above the table
    print(
        line(
            "chat reply, end to end (p50)",
            f"~{POSTER_CHAT_S:.0f} s",
            f"{chat_p50:.1f} s",
            f"{POSTER_CHAT_S / chat_p50:.0f}x faster",
        )
    )
    print()
    gateway = gateway_settings()
    print(
        "Model: SmolLM2-135M Q4 on llama-cpp-python (the poster: TinyLlama 1.1B on Ollama), "
        "one thread per pod, 2 pods, through the API server's service proxy; per pod "
        f"MAX_INFLIGHT={gateway.get('MAX_INFLIGHT', '?')} chats at once, "
        f"MAX_QUEUE={gateway.get('MAX_QUEUE', '0')} waiting up to "
        f"QUEUE_TIMEOUT={gateway.get('QUEUE_TIMEOUT', '-')} s. "
        f"{os.cpu_count()} CPUs, shared with whatever else runs (see the load averages)."
    )


def main() -> int:
    """Start the sandbox, measure, stop it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=POSTER_USERS)
    parser.add_argument("--chats", type=int, default=3, help="chats per user")
    parser.add_argument("--health", type=int, default=200, help="health checks per path")
    parser.add_argument("--recovery-users", type=int, default=4)
    parser.add_argument("--engine-cmd", default=None, help="as for python -m sandbox")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kube-llm-poster-"))
    print(f"starting the sandbox (output in {workdir}) ...", flush=True)
    sandbox = start_sandbox(workdir, engine_cmd=args.engine_cmd, timeout=180)
    try:
        asyncio.run(run(sandbox, args))
    finally:
        code = sandbox.stop()
        print(f"sandbox stopped (exit {code})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
