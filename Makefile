# cleaner: every target works on a fresh clone (targets depend on the venv).
# Pipeline recipes and their parameters live in pipelines/*.mk.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CLEANER := $(BIN)/cleaner
ROOT   ?= data
export PYTHONHASHSEED ?= 0
export TF_CPP_MIN_LOG_LEVEL ?= 2

.DEFAULT_GOAL := help
.PHONY: help install test lint bench

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create .venv and install cleaner with its dev tools

test: $(VENV)/.installed ## run the whole test suite
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed ## ruff, mypy and the import contracts (pyproject.toml [tool.importlinter])
	$(BIN)/ruff check cleaner tests bench
	$(BIN)/ruff format --check cleaner tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(VENV)/.installed ## run every benchmark under bench/ (JSON lines on stdout)
	@for b in bench/bench_*.py; do echo "# $$b" >&2; $(BIN)/python $$b || exit 1; done

include pipelines/*.mk
