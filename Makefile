# The two commands: `make run` (the service on SQLite, with a development token) and
# `make test` (the whole suite). Both set up .venv on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test lint venv dev-venv clean bench

$(BIN)/runbookd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/runbookd
dev-venv: $(VENV)/.dev

run: $(BIN)/runbookd
	RUNBOOKD_ENV=dev $(BIN)/runbookd db upgrade
	RUNBOOKD_ENV=dev $(BIN)/runbookd demo-registry
	RUNBOOKD_ENV=dev $(BIN)/runbookd serve --host $(HOST) --port $(PORT)

test: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/runbookd lint

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) runbookd.db runbookd.db-wal runbookd.db-shm var test-artifacts
