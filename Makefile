# praxiom-progress: the public targets are install, run, test, test-faults, bench, lint.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint migrate runner clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## Run the whole test suite against the PostgreSQL and Redis named by
## DATABASE_URL / REDIS_URL (defaults: the local servers). Each run makes
## its own throwaway database and drops it afterwards.
test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

migrate: install
	$(BIN)/praxiom-progress migrate

runner: install migrate
	$(BIN)/praxiom-progress runner

## Until the gateway lands, `run` is the runner alone (schema applied first).
run: runner

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
