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

.PHONY: setup run test lint clean clean-data clean-models

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

# clean: only files a rerun re-creates from what is kept (the dataset and the trained models
# stay). Snakemake's own .snakemake/ (locks, incomplete markers) is left for --unlock /
# --rerun-incomplete. The fetched dataset and the trained runs go only by name:
#   make clean-data     data/raw/chinese-mnist, and only when fetch made it (its SOURCE.json);
#                       anything else in data/raw (an archive.zip) is the user's and stays
#   make clean-models   models/ with every checkpoint and last.pt (hours of training)
clean:
	rm -rf logs reports/figures reports/evaluation reports/plots reports/report.md reports/report.html \
		data/interim data/processed

clean-data:
	@if [ -f data/raw/chinese-mnist/SOURCE.json ]; then \
		rm -rf data/raw/chinese-mnist && echo "removed data/raw/chinese-mnist"; \
	elif [ -e data/raw/chinese-mnist ]; then \
		echo "data/raw/chinese-mnist has no SOURCE.json (not made by fetch): left alone" >&2; exit 2; \
	fi

clean-models:
	rm -rf models
