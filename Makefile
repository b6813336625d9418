# `make demo`: the whole pipeline on the bundled demo data under ./demo/ (prepare_data, a tiny
# offline base, train_sft, train_orpo, train_dpo, eval_harness, export_lora, then the report
# demo/outputs/report.html); each step is printed as its command (see k12tune/demo/run.py).
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
	$(PY) -m k12tune.demo

test: $(STAMP)
	$(PY) -m ruff check src scripts tests bench
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/bench_prepare.py

clean:
	rm -rf demo data_proc bench/out .pytest_cache
