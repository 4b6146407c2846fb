"""Running a user's project (files written by a test) under pytest in a subprocess, as its
developer would: pytester, the real database, a clean environment."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

#: A subprocess pytest run must end well before the calling test's own timeout.
RUN_TIMEOUT = 100

_OUR_ENVIRONMENT = ("GRAPHILE_WORKER_SCHEMA", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")


def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop what this test run's own environment would add to the user's run."""
    for name in _OUR_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def postgresql_options(config: pytest.Config) -> list[str]:
    """pytest-postgresql's command-line options for the server this test run uses, with a
    database name of the run's own (runs on one server must not share one)."""
    return [
        f"--postgresql-host={config.getini('postgresql_host')}",
        f"--postgresql-port={config.getini('postgresql_port')}",
        f"--postgresql-user={config.getini('postgresql_user')}",
        f"--postgresql-dbname=sg_user_{os.getpid()}_{secrets.token_hex(4)}",
    ]


def write_files(root: Path, files: dict[str, str]) -> None:
    """Write ``files`` (path relative to ``root``: text) under ``root``."""
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
