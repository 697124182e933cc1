"""S11 (docs/reliability.md) and what every response shares: probes, X-Served-By, metrics,
OpenAPI."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx2
import pytest

from tests.backend.conftest import (
    CHAT,
    Backend,
    FakeEngine,
    assert_openai_error,
    chat_body,
    running_backend,
    running_engine,
)
from tests.fakes.engine import EngineConfig
from tests.fakes.serve import free_port

# S11 -------------------------------------------------------------------------------------


def test_readyz_waits_for_the_engine_to_list_the_model() -> None:
    config = EngineConfig(listed_models=["llama3"])
    with (
        running_engine(config) as engine,
        running_backend(engine.url, ready_cache_seconds=0) as backend,
    ):
        response = httpx2.get(backend.url + "/readyz")
        assert response.status_code == 503
        assert assert_openai_error(response.json())["code"] == "engine_not_ready"
        assert httpx2.get(backend.url + "/healthz").status_code == 200
        # Ollama lists pulled models with a tag; MODEL "tinyllama" matches "tinyllama:latest".
        config.listed_models = ["llama3", "tinyllama:latest"]
        response = httpx2.get(backend.url + "/readyz")
        assert response.status_code == 200
        assert response.json()["status"] == "ready"


def test_healthz_stays_up_while_the_engine_is_down() -> None:
    with running_backend(f"http://127.0.0.1:{free_port()}", ready_cache_seconds=0) as backend:
        for _ in range(3):
            started = time.perf_counter()
            health = httpx2.get(backend.url + "/healthz")
            assert health.status_code == 200
            assert time.perf_counter() - started < 1
            ready = httpx2.get(backend.url + "/readyz")
            assert ready.status_code == 503
            assert "unreachable" in ready.json()["error"]["message"]


def _chat_in_thread(url: str, timeout: float) -> tuple[threading.Thread, list[int]]:
    statuses: list[int] = []

    def chat() -> None:
        try:
            response = httpx2.post(url + CHAT, json=chat_body(stream=True), timeout=timeout)
            statuses.append(response.status_code)
        except httpx2.TimeoutException:
            statuses.append(0)

    thread = threading.Thread(target=chat)
    thread.start()
    return thread, statuses


def _wait_until(predicate: Callable[[], bool], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_readyz_stays_ready_while_a_busy_engine_is_slow_to_list() -> None:
    # llama-cpp-python's server lists its models only between generations. A pod that is
    # streaming replies is serving: it must not turn unready exactly when load peaks.
    config = EngineConfig(models_wait_for_streams=True, tokens=30, token_delay=0.06)
    with (
        running_engine(config) as engine,
        running_backend(engine.url, ready_cache_seconds=0, engine_read_timeout=5) as backend,
    ):
        assert httpx2.get(backend.url + "/readyz").status_code == 200
        thread, statuses = _chat_in_thread(backend.url, timeout=20)
        _wait_until(lambda: engine.stats.open_streams == 1)
        busy = httpx2.get(backend.url + "/readyz", timeout=5)
        assert busy.status_code == 200, busy.text
        thread.join(20)
        assert statuses == [200]
        assert httpx2.get(backend.url + "/readyz").status_code == 200


def test_readyz_fails_when_the_engine_answers_neither_chats_nor_listings() -> None:
    config = EngineConfig(fail="hang", models_wait_for_streams=True)
    with (
        running_engine(config) as engine,
        running_backend(engine.url, ready_cache_seconds=0, engine_read_timeout=5) as backend,
    ):
        thread, statuses = _chat_in_thread(backend.url, timeout=3)
        _wait_until(lambda: engine.stats.open_streams == 1)
        hung = httpx2.get(backend.url + "/readyz", timeout=5)
        assert hung.status_code == 503
        assert "did not list its models" in hung.json()["error"]["message"]
        thread.join(10)
        assert statuses == [0]


def test_warmup_loads_the_model_before_the_pod_is_ready() -> None:
    # Ollama loads a model on its first chat: a slow first token stands in for the load.
    config = EngineConfig(first_token_delay=1.5)
    with (
        running_engine(config) as engine,
        running_backend(engine.url, ready_cache_seconds=0, warmup=True) as backend,
    ):
        warming = httpx2.get(backend.url + "/readyz", timeout=5)
        assert warming.status_code == 503
        assert "warming up" in warming.json()["error"]["message"]
        _wait_until(lambda: httpx2.get(backend.url + "/readyz").status_code == 200, 10)
        for _ in range(3):
            assert httpx2.get(backend.url + "/readyz").status_code == 200
        metrics = httpx2.get(backend.url + "/metrics").text
    assert len(engine.stats.requests) == 1  # one warm-up, never repeated once warm
    assert engine.stats.requests[0]["max_tokens"] == 1
    assert "kube_llm_requests_total{" not in metrics  # the warm-up is no user's chat


def test_a_failed_warmup_is_tried_again() -> None:
    config = EngineConfig(fail="503")
    with (
        running_engine(config) as engine,
        running_backend(engine.url, ready_cache_seconds=0, warmup=True) as backend,
    ):
        failed = httpx2.get(backend.url + "/readyz")
        assert failed.status_code == 503
        assert "warm-up chat answered 503" in failed.json()["error"]["message"]
        config.fail = "none"
        _wait_until(lambda: httpx2.get(backend.url + "/readyz").status_code == 200, 10)
    assert len(engine.stats.requests) >= 2


def test_without_warmup_readiness_sends_no_chat(engine: FakeEngine) -> None:
    with running_backend(engine.url, ready_cache_seconds=0) as backend:
        assert httpx2.get(backend.url + "/readyz").status_code == 200
    assert engine.stats.requests == []


def test_readyz_is_cached_so_probes_are_cheap(engine: FakeEngine) -> None:
    with running_backend(engine.url, ready_cache_seconds=30) as backend:
        for _ in range(20):
            assert httpx2.get(backend.url + "/readyz").status_code == 200
    assert engine.stats.model_listings == 1


def test_readyz_is_503_when_draining(backend: Backend) -> None:
    assert httpx2.get(backend.url + "/readyz").status_code == 200
    backend.app.state.gate.begin_drain()
    response = httpx2.get(backend.url + "/readyz")
    assert response.status_code == 503
    assert assert_openai_error(response.json())["code"] == "shutting_down"
    chat = httpx2.post(backend.url + CHAT, json=chat_body())
    assert chat.status_code == 503
    assert chat.headers["retry-after"] == "1"
    assert httpx2.get(backend.url + "/healthz").status_code == 200


# Shared plumbing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/metrics", 200),
        ("GET", "/v1/models", 200),
        ("GET", "/openapi.json", 200),
        ("GET", "/nowhere", 404),
        ("GET", CHAT, 405),
        ("DELETE", "/healthz", 405),
    ],
)
def test_every_response_has_x_served_by_and_errors_are_openai_shaped(
    backend: Backend, method: str, path: str, status: int
) -> None:
    response = httpx2.request(method, backend.url + path)
    assert response.status_code == status
    assert response.headers["x-served-by"] == "test-pod"
    if status >= 400:
        assert_openai_error(response.json())


def test_models_lists_the_allowlist(engine: FakeEngine) -> None:
    with running_backend(engine.url, model="tinyllama", models=("tinyllama", "phi3")) as backend:
        body = httpx2.get(backend.url + "/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["tinyllama", "phi3"]


def test_metrics_carry_the_names_of_the_design(engine: FakeEngine, backend: Backend) -> None:
    engine.config.tokens = 5
    assert httpx2.post(backend.url + CHAT, json=chat_body(stream=True)).status_code == 200
    assert httpx2.post(backend.url + CHAT, json=chat_body(model="nope")).status_code == 404
    text = httpx2.get(backend.url + "/metrics").text
    for sample in [
        'kube_llm_requests_total{code="200"} 1.0',
        'kube_llm_requests_total{code="404"} 1.0',
        "kube_llm_inflight 0.0",
        'kube_llm_rejected_total{reason="invalid"} 1.0',
        "kube_llm_ttft_seconds_count 1.0",
        "kube_llm_request_seconds_count 1.0",
        "kube_llm_output_tokens_total 5.0",
        "# TYPE kube_llm_engine_errors_total counter",
    ]:
        assert sample in text, sample


def test_each_app_has_its_own_registry(engine: FakeEngine) -> None:
    with (
        running_backend(engine.url) as first,
        running_backend(engine.url) as second,
    ):
        httpx2.post(first.url + CHAT, json=chat_body())
        assert 'kube_llm_requests_total{code="200"} 1.0' in httpx2.get(first.url + "/metrics").text
        assert "kube_llm_requests_total{" not in httpx2.get(second.url + "/metrics").text


def test_openapi_describes_the_routes(backend: Backend) -> None:
    spec = httpx2.get(backend.url + "/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {CHAT, "/v1/models", "/healthz", "/readyz", "/metrics"}
