# Agora. A fresh machine needs only Python 3.11+ and make: the first target you run builds .venv/.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)
LOCK_ARGS := --quiet --no-emit-index-url --no-emit-find-links --extra dev --generate-hashes --strip-extras --allow-unsafe -o requirements.lock pyproject.toml

.DEFAULT_GOAL := help
.PHONY: help install lock upgrade run test test-fast lint format migrate openapi check clean bench fuzz soak

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# Every dependency, direct or not, at the version and hashes requirements.lock names; then Agora itself, editable.
$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Agora needs Python 3.11+; run make PYTHON=python3.11 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install Agora with its dev tools, at the versions of requirements.lock

lock: install ## re-resolve requirements.lock after a change to pyproject.toml's dependencies, keeping other pins
	$(BIN)/pip-compile $(LOCK_ARGS)

upgrade: install ## re-resolve requirements.lock at the newest versions pyproject.toml allows (review, then make test)
	$(BIN)/pip-compile --upgrade $(LOCK_ARGS)

run: install ## migrate and serve on AGORA_HOST:AGORA_PORT (embedded PostgreSQL unless AGORA_DATABASE_URL is set)
	$(BIN)/agora serve

test: install ## the whole suite against a real PostgreSQL (a throwaway embedded one unless AGORA_TEST_DATABASE_URL)
	$(BIN)/pytest

test-fast: install ## the suite without the tests that start server processes
	$(BIN)/pytest -m "not live"

lint: install ## ruff, formatting, the type checker (mypy), and the layer contracts (http -> services -> repo -> domain)
	$(BIN)/ruff check app domain migrations tests bench
	$(BIN)/ruff format --check app domain migrations tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix app domain migrations tests bench
	$(BIN)/ruff format app domain migrations tests bench

migrate: install ## apply migrations to the configured (or embedded) database
	$(BIN)/agora migrate

openapi: install ## regenerate openapi/openapi.json and docs/errors.md from the application
	$(BIN)/agora openapi --output openapi/openapi.json --errors docs/errors.md

check: lint test ## what CI runs

clean: ## remove the virtualenv and caches (keeps .data/, your database)
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

BENCH_ARGS ?=
bench: install ## every scenario vs its ceiling (raw SQL, pgbench replay, framework), 1M tasks (BENCH_ARGS="--tasks 100000 --repeat 1")
	@command -v wrk >/dev/null && command -v pgbench >/dev/null || { echo "make bench needs wrk and pgbench: sudo apt-get install wrk postgresql-client (Debian/Ubuntu)"; exit 1; }
	$(BIN)/python -m tests.bench.run --tasks 1000000 $(BENCH_ARGS)

FUZZ_ARGS ?=
fuzz: install ## schemathesis, all phases and checks, vs 2 server processes, 100 cases/operation, new seed (FUZZ_ARGS="--max-time 1800 --seed 7")
	$(BIN)/python -m tests.fuzz $(FUZZ_ARGS)

SOAK_ARGS ?=
soak: install ## CHAOS-1: 10,000 operations, 3 API SIGKILLs, a PostgreSQL crash, then every check (SOAK_ARGS="--seed 7 --operations 20000")
	$(BIN)/python -m tests.chaos $(SOAK_ARGS)
