# One-command set-up: `make demo` and `make test` create .venv and install on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo lint test test-all bench clean-logs help

help:
	@echo "make demo      - install, then train on built-in synthetic data on the CPU (a few minutes)"
	@echo "make lint      - install, then check the code with ruff (lint + import order; CI)"
	@echo "make test      - install, then run the fast test suite (CI)"
	@echo "make test-all  - also the slow tests (CLI subprocesses, sweeps, resume, DDP on CPU)"
	@echo "make bench     - measure training/predict/preprocessing throughput on this machine"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# the demo trains from scratch: no weight downloads, even for a user who is online
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) train.py experiment=demo

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

bench: $(STAMP)
	$(PY) benchmarks/bench.py

clean-logs:
	rm -rf logs/debug
