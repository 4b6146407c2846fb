"""The demo's database search against real servers: the local one, a closed port, and an
embedded PostgreSQL started from the ``pgserver`` package."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqlalchemy_graphile import _embedded


async def test_the_local_server_is_used_when_it_answers(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_embedded, "LOCAL_URL", db_url)  # the test server stands in for it
    found = await _embedded.find_database(None)
    assert (found.url, found.description) == (db_url, f"using the local server at {db_url}")


async def test_a_closed_port_does_not_answer() -> None:
    assert not await _embedded.answers("postgresql://postgres@127.0.0.1:1/postgres", 1.0)


@pytest.fixture
def embedded_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """With no URL and no local server, ``find_database`` starts an embedded server."""
    pytest.importorskip("pgserver", reason="the embedded server comes with the embedded extra")
    data_dir = tmp_path / "pgdata"
    monkeypatch.setattr(_embedded, "LOCAL_URL", "postgresql://postgres@127.0.0.1:1/postgres")
    monkeypatch.setenv("SG_EMBEDDED_DIR", str(data_dir))
    found = asyncio.run(_embedded.find_database(None))
    from pgserver.postgres_server import get_server

    try:
        assert found.description == (
            "no server at postgresql://postgres@127.0.0.1:1/postgres; "
            f"started an embedded PostgreSQL in {data_dir}"
        )
        yield found.url
    finally:
        get_server(data_dir).cleanup()


def test_the_demo_runs_on_an_embedded_server(embedded_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "sqlalchemy_graphile", "-c", embedded_url, "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Done: 8 of 8 demo jobs completed." in result.stdout
