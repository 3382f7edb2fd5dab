# msfeas: `make run` and `make test` do all set-up on a machine with Python 3.11 and make.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
SAMPLES := data_samples/default
RUN_DIR ?= runs/sample

.DEFAULT_GOAL := help
.PHONY: help setup run test samples clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install msfeas with pinned dependencies (idempotent)

run: $(STAMP) ## run the pipeline on the sample export and print the summary
	$(BIN)/msfeas run --input $(SAMPLES) --out $(RUN_DIR) --force

test: $(STAMP) ## run the test suite
	$(BIN)/python -m pytest -q

samples: $(STAMP) ## regenerate data_samples/ with the synthetic registry generator
	$(BIN)/python -m pipeline.synth --patients 2000 --seed 20261124 --out data_samples/default --with-bad-rows
	$(BIN)/python -m pipeline.synth --patients 2000 --seed 20261124 --out data_samples/regional --with-bad-rows --dialect regional

clean: ## remove the virtual environment and sample runs
	rm -rf $(VENV) runs
