# msfeas: `make run` and `make test` do all set-up on a machine with Python 3.11 and make.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
SAMPLES := data_samples/default
RUN_DIR ?= runs/sample

.DEFAULT_GOAL := help
.PHONY: help setup browser postgres run nightly test bench bench-large bench-spark samples sql clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' \
	  '{t[NR]=$$1; d[NR]=$$2; if (length($$1) > w) w = length($$1)} END {for (i = 1; i <= NR; i++) printf "  make %-*s  %s\n", w, t[i], d[i]}'

$(STAMP): pyproject.toml requirements.lock
	@echo "setting up $(VENV) (pinned dependencies; once)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@# Bytecode compiled once here: uv does not by default, and with PYTHONDONTWRITEBYTECODE set
	@# every run recompiled great-expectations, pandas and scipy from source (about 5 s a run).
	@$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	@$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

# msfeas's own modules compiled too (an editable install is not; only changed files are redone):
# about 0.15 s off every run, and the test suite starts a few hundred.
PYC = $(BIN)/python -m compileall -q pipeline schemas

setup: $(STAMP) ## create .venv and install msfeas with pinned dependencies (idempotent)

run: $(STAMP) ## run the three trials on the sample export with 24 months of history; print the summary
	@$(PYC)
	@$(BIN)/msfeas run --input $(SAMPLES) --out $(RUN_DIR) --trial all --force --history 24
	@echo ""
	@echo "open $(RUN_DIR)/report.html (the overview; each trial's report is in $(RUN_DIR)/<trial id>/report.html)"

browser: ## install Debian's chromium for the report's browser test (once; needs root or sudo)
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing chromium (Debian package) for the report test"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

postgres: ## install Debian's postgresql for the OMOP PostgreSQL tests (once; needs root or sudo)
	@{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing postgresql (Debian package) for the OMOP PostgreSQL tests"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }

nightly: $(STAMP) ## the scheduled run: make nightly INPUT=export/ RUNS=runs/ [ARGS="--keep 30"]
	@test -n "$(INPUT)" -a -n "$(RUNS)" || { echo "usage: make nightly INPUT=EXPORT_DIR RUNS=RUNS_DIR"; exit 2; }
	@$(BIN)/msfeas nightly --input $(INPUT) --runs-dir $(RUNS) $(ARGS)

test: $(STAMP) browser postgres ## run the test suite (installs chromium and postgresql for their tests when missing)
	@$(PYC)
	@$(BIN)/lint-imports --no-cache
	@$(BIN)/python -m pytest -q -n auto --dist loadgroup

bench: $(STAMP) ## benchmark at 20k, 100k and 1M patients against the read-only floor (fresh and what-if runs), and --history 24; writes bench/results.md
	@$(BIN)/python bench/run_bench.py --sizes 20000 100000 1000000 --repeat 3 --history 24

bench-large: $(STAMP) ## benchmark at 100k, 1M and 10M patients (10M: about 14 GB of CSV, generated once into bench/cache/; judged in patient shards); writes bench/results_large.md
	@$(BIN)/python bench/run_bench.py --sizes 100000 1000000 10000000 --repeat 1 --out bench/results_large.md

bench-spark: $(STAMP) ## the Spark engine (local) beside polars and duckdb at 100k and 1M, with driver memory; writes bench/spark_results.md
	@$(BIN)/python bench/spark_bench.py --sizes 100000 1000000

samples: $(STAMP) ## regenerate data_samples/ with the synthetic registry generator
	@$(BIN)/python -m pipeline.synth --patients 2000 --seed 20261124 --out data_samples/default --with-bad-rows
	@$(BIN)/python -m pipeline.synth --patients 2000 --seed 20261124 --out data_samples/regional --with-bad-rows --dialect regional
	@$(BIN)/python -m pipeline.synth --patients 2000 --seed 20261124 --out data_samples/msda --with-bad-rows --format msda
	@rm -rf data_samples/omop
	@$(BIN)/python -m pipeline.synth --patients 2000 --seed 20261124 --out data_samples/omop --format omop --omop-as parquet

sql: $(STAMP) ## regenerate sql/trials/ (the SQL of each bundled trial per dialect, for review) and sql/compiled/ (its DuckDB queries as shipped)
	@$(BIN)/python -m pipeline.engines.sql_snapshot --out sql/trials --compiled sql/compiled

clean: ## remove the virtual environment and sample runs
	@rm -rf $(VENV) runs
