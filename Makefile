# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv (Python >= 3.11) and install the project into it on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint typecheck docs chaos

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

# Most tests wait on PostgreSQL or on a child process, so a few more test processes than
# cores keep the machine busy; PYTEST_WORKERS=0 runs them in this process, one at a time.
PYTEST_WORKERS ?= 3
test: lint typecheck
	$(PY) -m pytest -n $(PYTEST_WORKERS)

# The documentation site, with warnings as errors, into $(SITE_DIR).
SITE_DIR ?= site
docs: $(VENV)/.installed
	$(PY) -m mkdocs build --strict --site-dir $(SITE_DIR)

# Fault injection on a PostgreSQL cluster of its own (port 5499), which it stops and restarts;
# needs root, the postgres user or sudo (docs/reliability.md). CI runs it after `make test`.
chaos: $(VENV)/.installed
	SG_ALLOW_PG_RESTART=1 $(PY) -m pytest -m chaos -p no:xdist tests/chaos
