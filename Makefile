# The README's two commands: `make demo` and `make test`. Both set up from nothing first.
VENV ?= .venv
BIN := $(VENV)/bin
RUNS ?= runs

.PHONY: setup demo test lint typecheck unit bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/inq-hw train --out $(RUNS)/fp32.pt
	$(BIN)/inq-hw quantize $(RUNS)/fp32.pt --bits 5 --out $(RUNS)/inq5.pt

lint: setup
	$(BIN)/ruff check inq_hw rtl_gen sim tests benches
	$(BIN)/ruff format --check inq_hw rtl_gen sim tests benches

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q -n 0 2>/dev/null || $(BIN)/pytest -q

test: lint typecheck
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python -m benches

clean:
	rm -rf $(RUNS) build .pytest_cache .mypy_cache .ruff_cache
