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

# The service runs under this recipe's shell, which passes a TERM on to it and waits: a TERM
# to make (or Ctrl-C) stops runbookd gracefully and quietly, where a recipe killed by the
# signal made make print "Error 143" (and a TERM to make alone left runbookd running).
run: $(BIN)/runbookd
	RUNBOOKD_ENV=dev $(BIN)/runbookd db upgrade
	RUNBOOKD_ENV=dev $(BIN)/runbookd demo-registry
	@echo 'RUNBOOKD_ENV=dev $(BIN)/runbookd serve --host $(HOST) --port $(PORT)'
	@RUNBOOKD_ENV=dev $(BIN)/runbookd serve --host $(HOST) --port $(PORT) & pid=$$!; \
	trap 'kill -TERM $$pid 2>/dev/null' TERM; trap '' INT; \
	wait $$pid 2>/dev/null; status=$$?; \
	while kill -0 $$pid 2>/dev/null; do wait $$pid 2>/dev/null; status=$$?; done; \
	case $$status in 0|130|143) exit 0 ;; *) exit $$status ;; esac

# pytest-xdist workers for `make test` (tests/support/workers.py says how they share);
# PYTEST_WORKERS=0 runs the suite in this one process. Four on a 2-core machine: the tests
# mostly wait on peers and polls (each worker used about a fifth of a core with two).
PYTEST_WORKERS ?= 4

test: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/runbookd lint

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) runbookd.db runbookd.db-wal runbookd.db-shm var test-artifacts
