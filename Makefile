# kube-llm: every target does its own set-up (virtual environments, installs, builds).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# checkov gets a virtual environment of its own: its pins drag openai and others back years
# and make pip backtrack for over ten minutes when it shares the project's environment.
CHECKOV_VENV := .checkov-venv
CHECKOV := $(CHECKOV_VENV)/bin/checkov
CHECKOV_VERSION := 3.3.30
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
# llama-cpp-python compiles llama.cpp for the building CPU (-march=native) unless told otherwise,
# and on a CPU with AMX that build crashes (SIGSEGV in ggml's AMX matrix multiply on the first
# chat; seen 2026-12-07 with 0.3.36, see docs/design.md). So the llm extra's llama-cpp-python is
# built once for AVX2 into a wheelhouse outside the clone, which fresh clones and CI reuse, and
# installed only from there (pip's own wheel cache would hand back a native build made before).
LLAMA_WHEELHOUSE ?= $(HOME)/.cache/kube-llm/llama-wheel-avx2
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
export KUBE_LLM_LLAMA_WHEELHOUSE := $(LLAMA_WHEELHOUSE)

.PHONY: demo test lint typecheck imports pytest venv checkov bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> installing kube-llm with the dev and llm extras into $(VENV)"
	@echo "    (the first run builds llama-cpp-python from source: about 7 minutes on 2 cores, kept in $(LLAMA_WHEELHOUSE))"
	$(PY) -m pip install --quiet --upgrade pip
	@if ! ls $(LLAMA_WHEELHOUSE)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
	  echo "==> building llama-cpp-python for AVX2 into $(LLAMA_WHEELHOUSE) (once)"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip wheel --no-deps --no-cache-dir \
	    --progress-bar off -w $(LLAMA_WHEELHOUSE) 'llama-cpp-python>=0.3.7'; fi
	$(PY) -m pip install --progress-bar off --find-links $(LLAMA_WHEELHOUSE) \
	  --only-binary llama-cpp-python -e '.[dev,llm]'
	@touch $@

checkov: $(CHECKOV)

$(CHECKOV):
	@echo "==> installing checkov $(CHECKOV_VERSION) into its own environment $(CHECKOV_VENV)"
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --progress-bar off checkov==$(CHECKOV_VERSION)
	@touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

imports: $(STAMP)
	$(VENV)/bin/lint-imports

# Two passes: the `serial` tests alone (they measure CPU time, probe timing or latency), then the
# rest on PYTEST_WORKERS pytest-xdist workers, one module per worker at a time (a module's
# sandbox starts once), the longest modules first (tests/conftest.py). Most tests wait on
# processes and polls, so more workers than cores pay: on 2 cores -n 3 and -n 4 tied and -n 2
# was slower (docs/testing.md). Both passes always run; either failing fails the target.
PYTEST_WORKERS ?= 4
PYTEST_ARGS ?= --durations=20
PYTEST_ENV := KUBE_LLM_CHECKOV=$(abspath $(CHECKOV))
pytest: $(STAMP) $(CHECKOV)
	status=0; \
	$(PYTEST_ENV) $(VENV)/bin/pytest -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ] || status=1; \
	$(PYTEST_ENV) $(VENV)/bin/pytest -m 'not serial' -n $(PYTEST_WORKERS) --dist loadfile \
		--no-loadscope-reorder $(PYTEST_ARGS) || status=1; \
	exit $$status

test: lint typecheck imports pytest

# The sandbox as a child process (output in .sandbox/), the cockpit on it in this terminal;
# quitting the cockpit (q or Ctrl+C) stops the sandbox and every process it started.
demo: $(STAMP)
	$(VENV)/bin/kube-llm demo

bench: $(STAMP)
	$(PY) bench/proxy_overhead.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .sandbox .pytest_cache .mypy_cache .ruff_cache

# Our load engine against hey (GET /healthz) and NVIDIA aiperf (streamed chats on the embedded
# model), by hand and never in `make test`: aiperf goes into .bench-venv/aiperf on first use
# (about 1.2 GB, 2 minutes). bench/loadgen.py hey|aiperf runs one half.
.PHONY: bench-loadgen
bench-loadgen: $(STAMP)
	$(PY) bench/loadgen.py
