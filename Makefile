# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv (Python >= 3.11) and install the project into it on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint typecheck

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,embedded,uvloop]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m sqlalchemy_graphile demo

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(VENV)/.installed
	$(PY) -m mypy

test: lint typecheck
	$(PY) -m pytest
