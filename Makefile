# Two commands do all set-up on a fresh machine:
#   make demo   - the whole product (API + worker + demo shop) on an embedded Redis
#   make test   - the test suite against real servers it starts itself
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Real public data (GeoNames postal codes, ZIP census table) for tests, demo and benchmarks;
# see README "Data". Override with SHARED_DATA=/path/to/data.
SHARED_DATA ?= ../shared/data
export OFFERWISE_SHARED_DATA ?= $(abspath $(SHARED_DATA))

.PHONY: demo test lint bench system-deps clean

$(BIN)/offerwise: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

demo: $(BIN)/offerwise
	$(BIN)/offerwise demo

test: $(BIN)/offerwise system-deps
	$(BIN)/pytest

lint: $(BIN)/offerwise
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(BIN)/offerwise system-deps
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache .hypothesis
