# cleaner: every target works on a fresh clone (targets depend on the venv).
# Pipeline recipes and their parameters live in pipelines/*.mk.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CLEANER := $(BIN)/cleaner
ROOT   ?= data
export PYTHONHASHSEED ?= 0
export TF_CPP_MIN_LOG_LEVEL ?= 2
# ENGINE=ray runs every per-file stage on Ray Data; RAY_ADDRESS=ray://head:10001 (or auto) names
# the cluster (docs/scaling.md). Passed to every cleaner command through the environment.
ENGINE      ?=
RAY_ADDRESS ?=
ifneq ($(strip $(ENGINE)),)
export CLEANER_ENGINE := $(ENGINE)
endif
ifneq ($(strip $(RAY_ADDRESS)),)
export CLEANER_RAY_ADDRESS := $(RAY_ADDRESS)
endif

.DEFAULT_GOAL := help
.PHONY: help install install-gpu test lint docs bench

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,ray]'
	touch $@

install: $(VENV)/.installed ## create .venv and install cleaner with its dev tools and Ray

# tensorflow-cpu (the default dependency) and tensorflow (the CUDA build) write the same files:
# the CUDA build is reinstalled last so that its files are the ones in place
install-gpu: $(VENV)/.installed ## on a Linux GPU machine: TensorFlow with CUDA in .venv
	$(BIN)/pip install --quiet -e '.[dev,ray,gpu]'
	$(BIN)/pip install --quiet --force-reinstall --no-deps \
	  "tensorflow==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("tensorflow"))')"
	$(BIN)/python -c "import tensorflow as tf; print('GPUs:', tf.config.list_physical_devices('GPU'))"

test: $(VENV)/.installed ## run the whole test suite (and list its 15 slowest tests)
	$(BIN)/python -m pytest -q --durations=15

lint: $(VENV)/.installed ## ruff, mypy, the import contracts (pyproject.toml [tool.importlinter]), the docs build
	$(BIN)/ruff check cleaner tests bench docs
	$(BIN)/ruff format --check cleaner tests bench docs
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(MAKE) --no-print-directory docs

# docs/_incoming/ (notes waiting to be folded into the pages) is excluded in mkdocs.yml
docs: $(VENV)/.installed ## build the docs (mkdocs.yml) strictly into site/: a broken link or anchor fails
	$(BIN)/mkdocs build --strict --quiet

bench: $(VENV)/.installed ## run every benchmark under bench/ (JSON lines on stdout)
	@for b in bench/bench_*.py; do echo "# $$b" >&2; $(BIN)/python $$b || exit 1; done

include pipelines/*.mk
