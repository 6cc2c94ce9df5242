# Two entry points a new machine needs: `make dev` runs the service, `make test` runs every check.
# Both create .venv and install the project into it first; nothing else is assumed but
# Python 3.11+, and for the tests Java 17+, Maven and Go (the stack) and Node.js with npm
# (the AsyncAPI validator, installed outside the repo): see scripts/system-deps.

VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: setup test lint unit integration dev stack-up stack-down clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup
	scripts/system-deps
	scripts/asyncapi-validator install
	$(MAKE) lint
	$(BIN)/pytest

unit: setup
	scripts/asyncapi-validator install
	$(BIN)/pytest tests/unit

integration: setup
	scripts/system-deps
	$(BIN)/pytest tests/integration

stack-up: setup
	scripts/system-deps
	$(BIN)/ingest stack up

stack-down: setup
	$(BIN)/ingest stack down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

dev: setup
	$(BIN)/ingest dev
