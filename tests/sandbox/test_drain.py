"""C1 with the fake engine: a graceful eviction fails none of the chats queued on the pod."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.sandbox.harness import (
    NAMESPACE,
    RunningSandbox,
    fake_engine_cmd,
    start_sandbox,
    wait_for,
)

pytestmark = pytest.mark.slow(reason="a sandbox for the module; waits out an evicted pod's drain")

SERVICE = f"/api/v1/namespaces/{NAMESPACE}/services/llm-backend:http/proxy"
CHAT = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "go"}], "max_tokens": 15}
# Each chat takes about 1.5 s (15 tokens, 0.1 s apart) and a pod runs one at a time
# (MAX_INFLIGHT=1 in the sandbox overlay): eight chats on one pod queue for about 12 s, longer
# than its 5 s preStop sleep, so chats are still queued when SIGTERM comes.
CHATS_ON_THE_VICTIM = 8


@dataclass(frozen=True)
class Answer:
    """One chat's answer: who sent it, when it started, the status, whether the reply was
    whole (a finish reason), the serving pod."""

    sender: str
    started: float
    status: int
    complete: bool
    pod: str | None
    detail: str


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(
        tmp_path_factory.mktemp("drain"),
        engine_cmd=fake_engine_cmd(busy_ms_per_token=0, token_delay=0.1, tokens=15),
    )
    yield running
    if running.process.poll() is None:
        running.stop()


def chat(sandbox: RunningSandbox, path: str, sender: str, answers: list[Answer]) -> None:
    """Send one chat to `path` and record how it was answered."""
    started = time.monotonic()
    with sandbox.http() as http:
        response = http.post(f"{path}/v1/chat/completions", json=CHAT, timeout=60)
    body = response.json() if response.status_code == 200 else {}
    complete = bool(body.get("choices")) and body["choices"][0]["finish_reason"] in (
        "stop",
        "length",
    )
    answers.append(
        Answer(
            sender,
            started,
            response.status_code,
            complete,
            response.headers.get("x-served-by"),
            response.text[:300],
        )
    )


def test_an_evicted_pod_serves_every_chat_queued_on_it(sandbox: RunningSandbox) -> None:
    """The chats a pod took before it was evicted (one running, the rest queued past its
    preStop sleep) all complete, and the Service sends it nothing once it is terminating."""
    victim = sorted(sandbox.ready_pods())[0]
    answers: list[Answer] = []
    pod_proxy = f"/api/v1/namespaces/{NAMESPACE}/pods/{victim}:8000/proxy"
    threads = [
        threading.Thread(target=chat, args=(sandbox, pod_proxy, f"queued-{i}", answers))
        for i in range(CHATS_ON_THE_VICTIM)
    ]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # in order
    time.sleep(0.5)
    with sandbox.http() as http:
        evicted = http.post(
            f"/api/v1/namespaces/{NAMESPACE}/pods/{victim}/eviction",
            json={
                "apiVersion": "policy/v1",
                "kind": "Eviction",
                "metadata": {"name": victim, "namespace": NAMESPACE},
            },
        )
    assert evicted.status_code == 201, evicted.text
    evicted_at = time.monotonic()
    # Users keep chatting through the Service while the pod drains.
    stop = threading.Event()

    def user(index: int) -> None:
        while not stop.is_set():
            chat(sandbox, SERVICE, f"user-{index}", answers)

    users = [threading.Thread(target=user, args=(i,)) for i in range(2)]
    for thread in users:
        thread.start()
    for thread in threads:
        thread.join(90)
    wait_for(lambda: victim not in {p["metadata"]["name"] for p in sandbox.pods()}, 60, "gone")
    stop.set()
    for thread in users:
        thread.join(90)

    failed = [a for a in answers if a.status != 200 or not a.complete]
    assert failed == [], failed
    queued = [a for a in answers if a.sender.startswith("queued-")]
    assert len(queued) == CHATS_ON_THE_VICTIM
    assert {a.pod for a in queued} == {victim}
    routed = [a for a in answers if a.sender.startswith("user-")]
    assert routed, "no chat went through the Service during the drain"
    assert all(a.pod != victim for a in routed if a.started > evicted_at), routed
