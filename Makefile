# The one entry point: setup, gen, lint, test, run, bench, eval.
# Every target installs what it needs first, so a fresh clone needs nothing else.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := .tools/node_modules/.bin/buf
BUF_VERSION := 1.75.0
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
EVAL_SCENARIOS ?= ../shared/eval/scenarios

.PHONY: setup gen gen-check lint test run bench eval clean

setup: $(STAMP) $(BUF)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(BUF):
	npm install --silent --no-save --no-audit --no-fund --prefix .tools @bufbuild/buf@$(BUF_VERSION)

gen: setup
	scripts/gen.sh gen

# gen/ must be exactly what `make gen` writes from protos/.
gen-check: setup
	scripts/gen-check.sh

lint: setup gen-check
	$(BUF) lint
	scripts/buf-breaking.sh
	$(VENV)/bin/ruff check services tests
	$(VENV)/bin/ruff format --check services tests
	$(VENV)/bin/mypy services tests

test: lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

run: setup
	$(VENV)/bin/corrmesh up --demo

bench: setup
	$(PY) -m tests.bench

# Replays every labelled scenario through a fresh mesh and prints one row per set.
eval: setup
	$(VENV)/bin/corrmesh eval-all $(EVAL_SCENARIOS) --out var/eval

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
