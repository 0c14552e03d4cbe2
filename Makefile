# praxiom-progress: the public targets are install, run, test, test-faults, bench, lint.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint migrate runner gateway clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,embedded]'
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

## The whole system in the foreground: schema applied, a runner in the background,
## the gateway in front. Ctrl-C stops both.
run: migrate
	@token=$$($(BIN)/praxiom-progress token create --workspace demo --user demo | tail -n 1); \
	echo "gateway: http://$${GATEWAY_HOST:-127.0.0.1}:$${GATEWAY_PORT:-8080}"; \
	echo "token: $$token"; \
	$(BIN)/praxiom-progress runner & runner=$$!; \
	trap 'kill -TERM $$runner 2>/dev/null' INT TERM; \
	$(BIN)/praxiom-progress gateway; \
	kill -TERM $$runner 2>/dev/null; wait $$runner

gateway: install migrate
	$(BIN)/praxiom-progress gateway

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
