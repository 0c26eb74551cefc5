# Developer commands; .ci/run uses `make lint`. Each uses the project virtual environment
# that README's Quickstart creates (.venv), or VENV=path for another.
VENV ?= .venv
BIN := $(VENV)/bin
BENCH ?= serving

AUTOGLUON ?= 1.6.3

.PHONY: help lint format test test-fast bench bench-venvs

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -e 's/:.*## /\t/'

lint:  ## ruff (rules and format), mypy (app, workers, client and tests), import-linter's layer contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format:  ## format the code and fix what ruff can fix (imports, upgrades) in place
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test:  ## the whole suite, as CI's embedded pass runs it (SQLite, server-less broker)
	$(BIN)/pytest

test-fast:  ## everything but the tests that start servers or install packages (minutes)
	$(BIN)/pytest -m "not e2e and not network"

bench:  ## one benchmark, BENCH=serving by default (see bench/README.md); ARGS=--write
	$(BIN)/python bench/$(BENCH).py $(ARGS)

bench-venvs:  ## the peers that cannot share the project's venv, each in its own under .bench/ (AutoGluon)
	python3 -m venv .bench/autogluon
	.bench/autogluon/bin/pip install -q "autogluon.tabular[lightgbm,catboost,xgboost]==$(AUTOGLUON)"
