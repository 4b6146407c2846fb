"""Choosing the demo's database: the given URL, the local server, or an embedded one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from sqlalchemy_graphile import _embedded
from sqlalchemy_graphile.errors import ConfigurationError


def test_data_dir_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SG_EMBEDDED_DIR", str(tmp_path / "mine"))
    assert _embedded.embedded_data_dir() == tmp_path / "mine"
    monkeypatch.delenv("SG_EMBEDDED_DIR")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert _embedded.embedded_data_dir() == Path("/var/tmp/sqlalchemy-graphile/pgdata")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert _embedded.embedded_data_dir() == tmp_path / "cache" / "sqlalchemy-graphile" / "pgdata"


async def test_a_given_url_is_used_as_is() -> None:
    found = await _embedded.find_database("postgresql://app:secret@db.example/app")
    assert found.url == "postgresql://app:secret@db.example/app"
    assert found.description == "using postgresql://app:***@db.example/app"


def test_missing_pgserver_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pgserver", None)
    monkeypatch.setitem(sys.modules, "pgserver.postgres_server", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'sqlalchemy-graphile\[embedded\]'"):
        _embedded.start_embedded(tmp_path / "pgdata")
