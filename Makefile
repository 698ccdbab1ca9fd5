# Two commands for a newcomer: `make demo` and `make test`. Both set everything up idempotently.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
ARGS ?=

.PHONY: demo test lint typecheck unit setup clean docs bench

setup: $(STAMP) $(NODE_STAMP)

# The venv is rebuilt only when a requirements or project file changes.
# python-qpid-proton (the local broker's AMQP engine) compiles with gcc on first install (~20 s).
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

# Azurite (Azure Storage emulator, from npm) for the Table Storage adapter's tests.
$(NODE_STAMP): package.json
	@npm install --no-audit --no-fund --loglevel=error
	@touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy shared functions function_app.py local tools bench

test: $(STAMP) $(NODE_STAMP) lint typecheck
	$(BIN)/pytest $(ARGS)

demo: $(STAMP)
	$(BIN)/python -m local.demo $(ARGS)

# Benchmarks (bench/README.md): prints a table and appends it to bench/RESULTS.md. ARGS=--quick for a short run.
bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache

docs: $(STAMP)
	$(BIN)/python -m tools.write_docs
