# Two commands do all the setup:
#   make run    installs into .venv, then runs the main job (quick profile, fetch -> report)
#   make test   installs into .venv, then runs the test suite
# DATA picks the dataset: a Kaggle archive.zip or unpacked folder, `kaggle`, or `synthetic`.

VENV ?= .venv
PYTHON ?= python3.11
DATA ?= $(if $(wildcard ../shared/data/chinese-mnist.zip),../shared/data/chinese-mnist.zip,kaggle)
PROFILE ?= quick
PYTEST_ARGS ?=

# Snakemake's shell commands and DVC's stages call `python`, `snakemake`: use the venv's.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup run test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

run: setup
	snakemake --profile workflow/profiles/$(PROFILE) --config data_source=$(DATA)

test: setup
	python -m pytest $(PYTEST_ARGS)

# ruff (lint and format) over src, tests, bench; snakefmt and Snakemake's own linter over the workflow.
lint: setup
	ruff check src tests bench
	ruff format --check src tests bench
	snakefmt --check Snakefile workflow
	snakemake --lint

clean:
	rm -rf .snakemake logs reports/figures reports/evaluation reports/plots models data/raw data/interim data/processed
