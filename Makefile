# Two commands do all the set-up: `make demo` and `make test`. Both install from
# requirements-lock.txt, the versions the suite last passed with; `make lock` refreshes it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements-lock.txt
# The installers themselves, pinned like everything else.
PIP_VERSION := 26.3
UV_VERSION := 0.13.9
DEMO_DIR := build/demo
DEMO_OUT := build/demo-out
LATEST := .venv-latest

.PHONY: demo test test-latest lock wheel-check bench experiment explore clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml $(LOCK)
	$(BIN)/pip install --quiet 'pip==$(PIP_VERSION)'
	$(BIN)/pip install --quiet -c $(LOCK) -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/boxweight demo-data --out $(DEMO_DIR)
	$(BIN)/boxweight prepare --input $(DEMO_DIR)/annotations.json --output $(DEMO_OUT) --overwrite \
		--val-fraction 0.2
	@echo
	@echo "Outputs in $(DEMO_OUT)/: train-*.tfrecord, val-*.tfrecord, stats.json, report.csv, report.html, rejects.jsonl, label_map.pbtxt, manifest.json, TFDS metadata (features.json, dataset_info.json)"

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest

# The lock: every package pyproject.toml and its extras need, resolved to the newest
# releases for CPython 3.11 on x86_64 Linux (the machine the suite runs on). Run
# `make lock test` to take new releases; commit the lock only when the suite passes.
lock: $(BIN)/python
	$(BIN)/pip install --quiet 'uv==$(UV_VERSION)'
	$(BIN)/uv pip compile pyproject.toml --all-extras --upgrade --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu --output-file $(LOCK)

# The newest versions pyproject.toml allows, without the lock, in a venv of their own:
# how a maintainer learns that a dependency's next release breaks the suite before a user does.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install --quiet --upgrade pip
	$(LATEST)/bin/pip install --quiet --upgrade --upgrade-strategy eager -e '.[test]'
	$(LATEST)/bin/pip list --format freeze > $(LATEST)/versions.txt
	@grep -iE '^(apache-beam|tensorflow|keras|numpy|pandas|pillow|protobuf)==' $(LATEST)/versions.txt
	$(LATEST)/bin/python -m pytest

# The wheel, installed with the lock into a clean venv outside the checkout, runs
# demo-data, prepare and report from another folder (tests/test_wheel.py does a quicker
# check of the same wheel in the suite).
wheel-check: $(STAMP)
	rm -rf build/wheel-check && mkdir -p build/wheel-check/dist
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir build/wheel-check/dist .
	$(PYTHON) -m venv build/wheel-check/venv
	build/wheel-check/venv/bin/pip install --quiet 'pip==$(PIP_VERSION)'
	build/wheel-check/venv/bin/pip install --quiet -c $(LOCK) build/wheel-check/dist/boxweight-*.whl
	cd $$(mktemp -d) && $(CURDIR)/build/wheel-check/venv/bin/boxweight demo-data --out data --images 60 \
		&& $(CURDIR)/build/wheel-check/venv/bin/boxweight prepare --input data/annotations.json --output out \
		&& $(CURDIR)/build/wheel-check/venv/bin/boxweight report out \
		&& echo "wheel check passed in $$PWD"

bench: demo
	$(BIN)/python -m bench.coco_stream
	$(BIN)/python -m bench.prepare_job
	$(BIN)/python -m bench.file_per_image
	$(BIN)/python -m bench.small_jobs
	$(BIN)/python -m bench.input_pipeline --records '$(DEMO_OUT)/train-*'

# the pre-registered gate: the default recipe against weights off, paired by seed (at most 45 minutes on 2 CPU cores)
experiment: $(STAMP)
	$(BIN)/python -m bench.weighting_experiment

# candidates, apart from the gate (build/explore/results.json); nothing here changes the default
explore: $(STAMP)
	$(BIN)/python -m bench.weighting_experiment --explore

clean:
	rm -rf build
