"""Developer sessions: `nox -s tests lint typecheck compat bench chaos docs`."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite (unit, integration, acceptance, compat) against real PostgreSQL."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def compat(session: nox.Session) -> None:
    """Only the tests that drive Node graphile-worker 0.17 against our schema."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/compat", *session.posargs)


@nox.session(python=PYTHON)
def chaos(session: nox.Session) -> None:
    """Opt-in fault injection on a PostgreSQL cluster of its own (docs/reliability.md); it
    stops and restarts that cluster, so it needs SG_ALLOW_PG_RESTART=1."""
    if os.environ.get("SG_ALLOW_PG_RESTART") != "1":
        session.error("the chaos tests stop and restart PostgreSQL: set SG_ALLOW_PG_RESTART=1")
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "chaos", "-p", "no:xdist", "tests/chaos", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, tests, examples and benchmarks."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Throughput and latency against Node graphile-worker 0.17 and pgqueuer on the same
    server, every side in every mode; a ``--sides`` or ``--modes`` given after ``--``
    replaces these."""
    session.install("-e", ".[test,uvloop]", "pgqueuer>=1.6")
    every = ["--sides", "ours", "node", "pgqueuer", "--modes", "unbatched", "batched", "batched12"]
    session.run("python", "-m", "benchmarks", *every, *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site with warnings as errors (mkdocs build --strict)."""
    session.install("-e", ".[dev]")
    session.run("mkdocs", "build", "--strict", *session.posargs)
