# The README's two commands: `make demo` and `make test`. Both set up from nothing first.
VENV ?= .venv
BIN := $(VENV)/bin
RUNS ?= runs

.PHONY: setup demo default-report sweep-report test test-fast lint typecheck bench clean clean-cache

setup:
	@bash scripts/setup.sh

# The demo writes under runs/ only, so it never dirties the checkout; the committed report
# under reports/ is regenerated on purpose with `make default-report`.
demo: setup
	$(BIN)/inq-hw flow --out $(RUNS)/flow --report $(RUNS)/reports/digits-cnn
	@echo "report: $(RUNS)/reports/digits-cnn/report.html; the command: . $(VENV)/bin/activate && inq-hw --help"

default-report: setup
	$(BIN)/inq-hw flow --out $(RUNS)/flow --report reports/digits-cnn

# The committed sweep report (reports/sweep-digits-cnn/): 12 points, about 8 minutes.
# Each point's report.html (its figures inlined) stays under runs/ (3.8 MB); the Markdown
# reports and their figures are committed.
sweep-report: setup
	$(BIN)/inq-hw sweep sweeps/digits-cnn-report.toml --out $(RUNS)/sweep-report --executor pool
	rm -rf reports/sweep-digits-cnn && mkdir -p reports/sweep-digits-cnn/points
	cp $(RUNS)/sweep-report/sweep.md $(RUNS)/sweep-report/sweep.json $(RUNS)/sweep-report/*.png reports/sweep-digits-cnn/
	for d in $(RUNS)/sweep-report/points/*/; do n=$$(basename $$d); mkdir -p reports/sweep-digits-cnn/points/$$n; \
	  cp $$d/report.md $$d/results.json $$d/flow.toml $$d/*.png reports/sweep-digits-cnn/points/$$n/; done

lint: setup
	$(BIN)/ruff check inq_hw rtl_gen sim tests benches scripts
	$(BIN)/ruff format --check inq_hw rtl_gen sim tests benches scripts
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

# Every tier on both cores (pytest-xdist; a file's tests share one worker and its fixtures),
# then the `dist` tests alone: each starts processes of its own on both cores (torchrun,
# Ray), which a second worker beside them would starve.
test: lint typecheck
	$(BIN)/pytest -q -n 2 --dist loadfile -m "not dist"
	$(BIN)/pytest -q -m dist

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
