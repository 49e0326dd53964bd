# Two entry points that work on a fresh machine (Python 3.10+ with venv and pip):
#   make reproduce   create .venv, then run the MNIST lottery-ticket reproduction with DVC
#   make test        create .venv, then run the test suite
#   make reference   the paper-protocol reference result into docs/results/ (hours on 2 cores)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup reproduce reproduce-snakemake test check reference

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

# The reference result (README, docs/results/lenet_mnist/): Frankle & Carbin's LeNet protocol
# from its committed params, run in build/reference so that params.yaml stays yours.
REFERENCE := docs/results/lenet_mnist
reference: setup
	mkdir -p build/reference
	cp $(REFERENCE)/params.yaml build/reference/params.yaml
	ln -sfn ../../src build/reference/src
	ln -sfn ../../workflow build/reference/workflow
	cd build/reference && snakemake --cores $(or $(CORES),2)
	mkdir -p $(REFERENCE)/figures
	cp build/reference/results/*.csv build/reference/results/report.md $(REFERENCE)/
	cp build/reference/results/figures/*.png $(REFERENCE)/figures/
