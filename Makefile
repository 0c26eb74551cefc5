# Developer commands; .ci/run uses `make lint`. Each uses the project virtual environment
# that README's Quickstart creates (.venv), or VENV=path for another.
VENV ?= .venv
BIN := $(VENV)/bin
BENCH ?= serving

AUTOGLUON ?= 1.6.3
KSERVE ?= 0.21.0
MLSERVER ?= 1.7.1
PYTRITON ?= 0.7.0

.PHONY: help lint format test test-fast bench bench-explain bench-venvs portfolio

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

bench-explain:  ## explain latency of one row per family vs predict, and agreement with shap (the bench extra); ARGS=--write
	$(BIN)/python bench/explain.py $(ARGS)

portfolio:  ## relearn the search's starting points (app/search/portfolio.json) on bench's suite of public tables (docs/portfolio.md); ARGS=--jobs 2
	$(BIN)/python -m bench.learn_portfolio $(ARGS)

ORT := $(shell $(BIN)/python -c "import onnxruntime; print(onnxruntime.__version__)" 2>/dev/null)

bench-venvs:  ## the peers that cannot share the project's venv, each in its own under .bench/
	python3 -m venv .bench/autogluon
	.bench/autogluon/bin/pip install -q "autogluon.tabular[lightgbm,catboost,xgboost]==$(AUTOGLUON)"
	python3 -m venv .bench/kserve
	.bench/kserve/bin/pip install -q "kserve==$(KSERVE)" "onnxruntime==$(ORT)"
	python3 -m venv .bench/mlserver
	.bench/mlserver/bin/pip install -q "mlserver==$(MLSERVER)" "onnxruntime==$(ORT)"
	python3 -m venv .bench/pytriton
	.bench/pytriton/bin/pip install -q "nvidia-pytriton==$(PYTRITON)" "onnxruntime==$(ORT)"
