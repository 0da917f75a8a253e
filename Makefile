# The README's two commands: `make demo` and `make test`. Both set up from nothing first.
VENV ?= .venv
BIN := $(VENV)/bin
RUNS ?= runs

.PHONY: setup demo default-report test test-fast lint typecheck bench clean clean-cache

setup:
	@bash scripts/setup.sh

# The demo writes under runs/ only, so it never dirties the checkout; the committed report
# under reports/ is regenerated on purpose with `make default-report`.
demo: setup
	$(BIN)/inq-hw flow --out $(RUNS)/flow --report $(RUNS)/reports/digits-cnn
	@echo "report: $(RUNS)/reports/digits-cnn/report.html; the command: . $(VENV)/bin/activate && inq-hw --help"

default-report: setup
	$(BIN)/inq-hw flow --out $(RUNS)/flow --report reports/digits-cnn

lint: setup
	$(BIN)/ruff check inq_hw rtl_gen sim tests benches scripts
	$(BIN)/ruff format --check inq_hw rtl_gen sim tests benches scripts
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q

# The fast tier on both cores (pytest-xdist): about a minute; `make test` runs every tier.
test-fast: setup
	$(BIN)/pytest -q -n 2 -m "not hw and not slow and not dist and not integration"

bench: setup
	$(BIN)/python -m benches

clean:
	rm -rf $(RUNS) build .pytest_cache .mypy_cache .ruff_cache

# Synthesis and simulation builds are cached per design hash outside the checkout
# ($$INQ_HW_CACHE, default ~/.cache/inq-hw), shared by every checkout of this user.
clean-cache:
	rm -rf "$${INQ_HW_CACHE:-$$HOME/.cache/inq-hw}"
