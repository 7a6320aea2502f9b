# Stratus tasks. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=
# the suite on two workers, each test file on one of them (its module fixtures are shared);
# `make test PYTEST_PARALLEL=` runs it in one process
PYTEST_PARALLEL ?= -n 2 --dist loadfile
CODE   := src tests $(wildcard bench scripts examples)

.DEFAULT_GOAL := help
.PHONY: help run install install-dev system-deps lint typecheck layers test test-all fmt migration \
	console-assets clean

help: ## list the tasks
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[postgres,s3,models,tour]'
	@touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed ## create .venv and install Stratus into it

install-dev: $(VENV)/.installed-dev ## install Stratus with the test and lint tools

run: install ## install, then start the platform with a demo endpoint (Ctrl-C stops it)
	$(BIN)/stratus up --demo

system-deps: ## install the system packages the tests need (PostgreSQL, Prometheus, Chromium)
	bash scripts/install-system-deps.sh

lint: install-dev ## ruff check and ruff format --check
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)

typecheck: install-dev ## mypy (strict for core, iam, storage)
	$(BIN)/mypy

layers: install-dev ## import-linter: the layers point one way
	$(BIN)/lint-imports

test: install-dev system-deps lint typecheck layers ## everything CI runs: lint, types, layers, pytest
	$(BIN)/pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-all: install-dev system-deps ## pytest including slow tests
	$(BIN)/pytest -m '' $(PYTEST_PARALLEL) $(PYTEST_ARGS)

fmt: install-dev ## format the code and fix what ruff can
	$(BIN)/ruff format $(CODE)
	$(BIN)/ruff check --fix $(CODE)

migration: install-dev ## new migration from the tables: make migration MESSAGE="add x"
	$(BIN)/python scripts/new_migration.py "$(MESSAGE)"

# not part of `test` or `run`: the vendored files are committed, so installs need no npm
console-assets: ## npm ci from console-assets/ and vendor the console's libraries
	$(PYTHON) scripts/console_assets.py

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
