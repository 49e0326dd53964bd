# Two entry points that work on a fresh machine (Python 3.10+ with venv and pip):
#   make reproduce   create .venv, then run the MNIST lottery-ticket reproduction with DVC
#   make test        create .venv, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup reproduce reproduce-snakemake test check

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[test]'
	touch $@

reproduce: setup
	$(BIN)/lth check
	$(BIN)/dvc repro

reproduce-snakemake: setup
	$(BIN)/snakemake --cores $(or $(CORES),2)

test: setup
	$(BIN)/python -m pytest

check: setup
	$(BIN)/lth check
