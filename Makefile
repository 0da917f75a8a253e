# The README's two commands: `make demo` and `make test`. Both set up from nothing first.
VENV ?= .venv
BIN := $(VENV)/bin
RUNS ?= runs

.PHONY: setup demo test lint typecheck bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/inq-hw train --out $(RUNS)/fp32.pt
	$(BIN)/inq-hw quantize $(RUNS)/fp32.pt --bits 5 --out $(RUNS)/inq5.pt
	$(BIN)/inq-hw export $(RUNS)/inq5.pt --out $(RUNS)/inq5-int
	$(BIN)/inq-hw eval $(RUNS)/inq5-int
	$(BIN)/inq-hw vectors $(RUNS)/inq5-int --samples 64
	$(BIN)/python scripts/inq_accuracy_table.py --fp32 $(RUNS)/fp32.pt --runs $(RUNS)/table --out $(RUNS)/inq-digits

lint: setup
	$(BIN)/ruff check inq_hw rtl_gen sim tests benches scripts
	$(BIN)/ruff format --check inq_hw rtl_gen sim tests benches scripts

typecheck: setup
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python -m benches

clean:
	rm -rf $(RUNS) build .pytest_cache .mypy_cache .ruff_cache
