"""The demo's database search against real servers: the local one (where it makes a
database of its own), a closed port, and an embedded PostgreSQL started from the
``pgserver`` package, also while the local server answers (``--embedded``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from sqlalchemy_graphile import WorkerUtils, _embedded
from sqlalchemy_graphile.cli import EXIT_ERROR, main


async def test_the_local_server_is_used_when_it_answers(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch, postgresql_empty: psycopg.Connection
) -> None:
    # The test server stands in for the local one, the empty database for its `postgres`.
    name = f"sg_demo_found_{os.getpid()}"
    monkeypatch.setattr(_embedded, "LOCAL_URL", empty_db_url)
    monkeypatch.setattr(_embedded, "DEMO_DATABASE", name)
    try:
        found = await _embedded.find_database(None)
        again = await _embedded.find_database(None)
    finally:
        postgresql_empty.autocommit = True
        postgresql_empty.execute(f'drop database if exists "{name}" with (force)')
    host = postgresql_empty.info.host
    port = postgresql_empty.info.port
    assert found.url == empty_db_url.rsplit("/", 1)[0] + f"/{name}"
    assert found.own
    assert found.description == (
        f"{name}, the demo's own, on the local server at {host}:{port}; created it just now"
    )
    assert found.removal == f"To remove it later: dropdb -h {host} -p {port} -U postgres {name}"
    assert again.description == f"{name}, the demo's own, on the local server at {host}:{port}"


async def test_a_given_url_is_used_as_it_is(db_url: str) -> None:
    found = await _embedded.find_database(db_url)
    assert (found.url, found.description, found.own) == (db_url, f"using {db_url}", False)


async def test_a_closed_port_does_not_answer() -> None:
    assert not await _embedded.answers("postgresql://postgres@127.0.0.1:1/postgres", 1.0)


async def test_without_a_local_server_an_embedded_one_is_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pgserver", reason="the embedded server comes with the embedded extra")
    from pgserver.postgres_server import get_server

    data_dir = tmp_path / "pgdata"
    closed = "postgresql://postgres@127.0.0.1:1/postgres"
    monkeypatch.setattr(_embedded, "LOCAL_URL", closed)
    monkeypatch.setenv("SG_EMBEDDED_DIR", str(data_dir))
    try:
        found = await _embedded.find_database(None)
        async with WorkerUtils(found.url) as utils:
            await utils.migrate()
            job = await utils.add_raw_job("hello")
    finally:
        get_server(data_dir).cleanup()
    assert found.own
    assert found.description == (
        f"sqlalchemy_graphile_demo, the demo's own, on an embedded PostgreSQL in {data_dir} "
        f"(no server at {closed}); created it just now"
    )
    assert found.url.startswith("postgresql://postgres@:")
    assert "/sqlalchemy_graphile_demo?host=" in found.url
    assert job.task_identifier == "hello"


def _demo_on_embedded(
    data_dir: Path, environment: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run the demo with the embedded server's data in ``data_dir`` (the local test server
    answers meanwhile); stop that server afterwards whatever happened."""
    pytest.importorskip("pgserver", reason="the embedded server comes with the embedded extra")
    hidden = ("DATABASE_URL", "SG_DEMO_EMBEDDED")
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    env.update(environment, SG_EMBEDDED_DIR=str(data_dir))
    try:
        return subprocess.run(
            [sys.executable, "-m", "sqlalchemy_graphile", "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )
    finally:
        from pgserver.postgres_server import get_server

        if data_dir.exists():
            get_server(data_dir).cleanup()


def test_the_demo_runs_on_an_embedded_server_even_when_a_local_one_answers(
    tmp_path: Path,
) -> None:
    """``SG_DEMO_EMBEDDED=1``; ``--embedded`` sets the same switch (see the unit tests)."""
    data_dir = tmp_path / "pgdata"
    result = _demo_on_embedded(data_dir, environment={"SG_DEMO_EMBEDDED": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(
        f"Database: sqlalchemy_graphile_demo, the demo's own, on an embedded PostgreSQL in "
        f"{data_dir} (--embedded); created it just now\n"
        f"  The embedded server stops with the demo; its data stays in {data_dir}. "
        f"Remove it with: rm -rf {data_dir}\n"
    )
    assert "Done: 8 of 8 demo jobs completed." in result.stdout
    assert (data_dir / "PG_VERSION").is_file()


def test_the_embedded_flag_and_a_url_exclude_each_other(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", db_url, "demo", "--embedded"]) == EXIT_ERROR
    assert "cannot use both -c and the embedded server" in capsys.readouterr().err
