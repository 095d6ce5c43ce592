# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR := build/demo
DEMO_OUT := build/demo-out

.PHONY: demo test bench experiment clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
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
	$(BIN)/python -m pytest

bench: demo
	$(BIN)/python -m bench.coco_stream
	$(BIN)/python -m bench.prepare_job
	$(BIN)/python -m bench.file_per_image
	$(BIN)/python -m bench.input_pipeline --records '$(DEMO_OUT)/train-*'

# about 45 minutes on 2 CPU cores
experiment: $(STAMP)
	$(BIN)/python -m bench.weighting_experiment

clean:
	rm -rf build
