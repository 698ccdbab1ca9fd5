# Two commands for a newcomer: `make demo` and `make test`. Both set everything up idempotently.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
ARGS ?=
# Test processes (pytest-xdist); every test starts its own servers on free ports, so workers never collide.
WORKERS ?= 4
# How far `make test-shifted` moves the clock (libfaketime syntax: +400d, -30d, or @2027-03-01 09:00:00).
SHIFT ?= +400d
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-shifted faketime chromium lint typecheck unit integration e2e reliability setup clean docs bench lock

setup: $(STAMP) $(NODE_STAMP)

# The venv is updated only when a requirements or project file changes. Two pip calls, because pip's hash-checking
# mode covers every requirement of one install: first the runtime lock (requirements.txt, exact pins, hashes
# checked), then the dev tools constrained to the same pins (the lock without its hashes), then the project itself.
# python-qpid-proton (the local broker's AMQP engine) compiles with gcc on first install (~20 s).
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check --require-hashes -r requirements.txt
	@grep -E '^[A-Za-z0-9]' requirements.txt | sed 's/ *\\$$//' > $(VENV)/runtime-constraints.txt
	@$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt -c $(VENV)/runtime-constraints.txt
	@$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

# requirements.txt, what Azure installs, is generated from pyproject.toml's [project.dependencies] (the ranges):
# exact pins with hashes for every platform (--universal), for Python 3.11 (the Function App's runtime). Pins
# already in the file are kept; ARGS=--upgrade moves everything to the newest allowed, ARGS='--upgrade-package X'
# one package. tests/unit/test_lock.py checks the file still matches pyproject.toml.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --quiet --universal --python-version 3.11 --generate-hashes \
		--custom-compile-command 'make lock' --output-file requirements.txt $(ARGS)

# Azurite (Azure Storage emulator, from npm) for the Table Storage adapter's tests.
$(NODE_STAMP): package.json
	@npm install --no-audit --no-fund --loglevel=error
	@touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The paths are [tool.mypy] files in pyproject.toml (the pre-commit hook runs the same command).
typecheck: $(STAMP)
	$(BIN)/mypy

# Every layer in one pytest-xdist pool: the workers stay busy across layers (the e2e and reliability tests wait
# on servers and timers, the unit tests fill the gaps), which ends sooner than running the layers one by one.
test: $(STAMP) $(NODE_STAMP) chromium lint typecheck
	$(BIN)/pytest -n $(WORKERS) $(ARGS)

# One layer at a time (docs/local-development.md, "Test layers"); ARGS narrows further (ARGS='-k risk').
unit: $(STAMP)
	$(BIN)/pytest -n $(WORKERS) tests/unit $(ARGS)

integration: $(STAMP) $(NODE_STAMP)
	$(BIN)/pytest -n $(WORKERS) tests/integration $(ARGS)

e2e: $(STAMP) $(NODE_STAMP) chromium
	$(BIN)/pytest -n $(WORKERS) tests/e2e $(ARGS)

reliability: $(STAMP) $(NODE_STAMP)
	$(BIN)/pytest -n $(WORKERS) tests/reliability $(ARGS)

# The local world on another date (docs/local-development.md, "Dates"): every test and the demo with the whole
# machine clock shifted by libfaketime. Run after `make test` (or `make setup`): the venv and npm packages are
# installed under the real clock, as TLS downloads need the real date.
test-shifted: $(STAMP) $(NODE_STAMP) faketime chromium
	faketime -f '$(SHIFT)' date -u '+shifted clock: %Y-%m-%d %H:%M UTC'
	faketime -f '$(SHIFT)' $(BIN)/pytest -n $(WORKERS) $(ARGS)
	faketime -f '$(SHIFT)' $(BIN)/python -m local.demo --out demo-output-shifted

# libfaketime, from Debian's package (installed once; needs root or sudo).
faketime:
	@command -v faketime >/dev/null || $(SUDO) apt-get install -y -qq faketime >/dev/null \
		|| { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq faketime >/dev/null; }

# Headless Chromium and ChromeDriver from Debian for the dashboard's browser tests (tests/e2e/browser.py; a test
# tool's own browser download does not work offline). Installed once; needs root or sudo.
chromium:
	@{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } \
		|| $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null \
		|| { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }

demo: $(STAMP)
	$(BIN)/python -m local.demo $(ARGS)

# Benchmarks (bench/README.md): prints a table and appends it to bench/RESULTS.md. ARGS=--quick for a short run.
bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache demo-output demo-output-shifted

docs: $(STAMP)
	$(BIN)/python -m tools.write_docs
