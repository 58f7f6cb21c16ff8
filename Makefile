# The two set-up commands of the README; each installs what it needs on first use.
#   make ask Q="Which river flows through the capital of Hungary?"   - the main job
#   make test                                                          - the tests (+ lint and types: make check)
VENV ?= .venv
BIN := $(VENV)/bin
Q ?= Which river flows through the capital of Hungary?
ARGS ?=

.PHONY: setup ask test lint check bench

setup:
	@VENV=$(VENV) scripts/bootstrap.sh

ask: setup
	$(BIN)/sounding ask "$(Q)" $(ARGS)

test: setup
	@VENV=$(VENV) scripts/build_llama_server.sh
	@VENV=$(VENV) scripts/vllm_env.sh
	$(BIN)/python -m pytest $(ARGS)

lint: setup
	$(BIN)/ruff check sounding agent tools budgets evals tests benchmarks
	$(BIN)/ruff format --check sounding agent tools budgets evals tests benchmarks
	$(BIN)/mypy -p sounding

check: test lint
