# The README's two commands: `make demo` and `make test`. Both set up from nothing first.
VENV ?= .venv
BIN := $(VENV)/bin
RUNS ?= runs

.PHONY: setup demo test lint typecheck bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/inq-hw flow --out $(RUNS)/flow --report reports/digits-cnn

lint: setup
	$(BIN)/ruff check inq_hw rtl_gen sim tests benches scripts
	$(BIN)/ruff format --check inq_hw rtl_gen sim tests benches scripts
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python -m benches

clean:
	rm -rf $(RUNS) build .pytest_cache .mypy_cache .ruff_cache
