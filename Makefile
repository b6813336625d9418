# `make demo`: the pipeline on bundled data (data stage, SFT of a tiny offline base, then DPO
# and ORPO of the SFT policy, evaluation of all three against the base, export).
# `make test`: the test suite.
# Both create .venv and install the CPU stack on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml requirements-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements-cpu.txt
	touch $(STAMP)

demo: $(STAMP)
	rm -rf demo
	$(PY) -m k12tune.demo.data demo/data_raw
	$(PY) -m scripts.prepare_data --config configs/demo/data.yaml --dry-run false
	$(PY) -m k12tune.demo.base demo/tiny_base demo/data_proc
	$(PY) -m scripts.train_sft --config configs/demo/sft.yaml
	$(PY) -m scripts.train_sft --config configs/demo/sft.yaml --dry-run false
	$(PY) -m scripts.train_dpo --config configs/demo/dpo.yaml
	$(PY) -m scripts.train_dpo --config configs/demo/dpo.yaml --dry-run false
	$(PY) -m scripts.train_orpo --config configs/demo/orpo.yaml --dry-run false
	$(PY) -m scripts.eval_harness --config configs/demo/eval.yaml
	$(PY) -m scripts.eval_harness --config configs/demo/eval.yaml --dry-run false
	$(PY) -m scripts.export_lora --config configs/demo/export.yaml
	$(PY) -m scripts.export_lora --config configs/demo/export.yaml --dry-run false

test: $(STAMP)
	$(PY) -m ruff check src scripts tests bench
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/bench_prepare.py

clean:
	rm -rf demo data_proc bench/out .pytest_cache
