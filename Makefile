# Two entry points a new machine needs: `make dev` runs the service, `make test` runs every check.
# Both create .venv and install the project into it first; nothing else is assumed but
# Python 3.11+, and for the tests Java 17+, Maven and Go (the stack) and Node.js with npm
# (the AsyncAPI validator and tus-js-client, installed outside the repo): see scripts/system-deps.

VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: setup setup-dev test lint unit integration dev stack-up stack-down clean

# setuptools announces every editable install with a warning-shaped notice ("Editable
# installation."); that one, and only that one, is silenced.
PIP_INSTALL = PYTHONWARNINGS='ignore:Editable installation:UserWarning' $(BIN)/pip install --quiet

# The runtime alone for `make dev`; the test tools (a much larger set) only for the checks.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(PIP_INSTALL) -e .
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed
	$(PIP_INSTALL) -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

setup-dev: $(BIN)/.installed-dev

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup-dev
	scripts/system-deps
	scripts/asyncapi-validator install
	scripts/tus-js-client install
	$(MAKE) lint
	$(BIN)/pytest

unit: setup-dev
	scripts/asyncapi-validator install
	$(BIN)/pytest tests/unit

integration: setup-dev
	scripts/system-deps
	scripts/tus-js-client install
	$(BIN)/pytest tests/integration

stack-up: setup
	scripts/system-deps
	$(BIN)/ingest stack up

stack-down: setup
	$(BIN)/ingest stack down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# `make dev PORT=9090` (or HOST=0.0.0.0) when 8080 is taken.
dev: setup
	$(BIN)/ingest dev$(if $(HOST), --host $(HOST))$(if $(PORT), --port $(PORT))
