"""``sqlalchemy-graphile demo`` end to end: in a database it was given it keeps to a schema
of its own; without one it uses (and creates) a database of its own on the local server;
``--forever`` counts the jobs that actually ran."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sqlalchemy_graphile import _embedded
from sqlalchemy_graphile.cli import EXIT_OK, main

from .._processes import reaped, terminate, wait_until

_EXPECTED_LINES = [
    "Hello, Ada!",
    "Hello, Grace!",
    "fibonacci(90) = 2880067194370816120",
    "uploading report.pdf failed; retried in about 3 s",
    "uploaded report.pdf on the retry",
    "notified 3 users in one job: ada, grace, linus",
    "sent the receipt for order 1001 (queue receipts)",
    "sent the receipt for order 1003 (queue receipts)",
]


def _environment() -> dict[str, str]:
    hidden = ("DATABASE_URL", "GRAPHILE_WORKER_SCHEMA", "SG_DEMO_EMBEDDED")
    return {k: v for k, v in os.environ.items() if k not in hidden}


def _schemas(db: psycopg.Connection) -> set[str]:
    db.rollback()
    rows = db.execute("select nspname from pg_namespace where nspname like 'graphile%'")
    return {row[0] for row in rows.fetchall()}


def test_in_a_given_database_the_demo_keeps_to_its_own_schema(
    empty_db_url: str, postgresql_empty: psycopg.Connection
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sqlalchemy_graphile", "-c", empty_db_url, "demo"],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.startswith(
        f"Database: using {empty_db_url}\n"
        "  The demo keeps to the schema graphile_worker_demo there. "
        "To remove it later: DROP SCHEMA graphile_worker_demo CASCADE;\n"
        "Schema 'graphile_worker_demo': installed\n"
    )
    for line in _EXPECTED_LINES:
        assert line in out, out
    # The named queue runs its jobs one at a time, in order.
    receipts = [line for line in out.splitlines() if "sent the receipt" in line]
    assert [r.split("order ")[1][:4] for r in receipts] == ["1001", "1002", "1003"]
    assert out.rstrip().endswith("Done: 8 of 8 demo jobs completed.")
    assert "Traceback" not in result.stderr
    assert _schemas(postgresql_empty) == {"graphile_worker_demo"}
    remaining = postgresql_empty.execute(
        "select count(*), count(*) filter (where locked_by is not null)"
        " from graphile_worker_demo._private_jobs"
    ).fetchone()
    assert remaining == (0, 0)


@pytest.fixture
def demo_database(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch, postgresql_empty: psycopg.Connection
) -> Iterator[str]:
    """The test server stands in for the local server, the empty test database for its
    ``postgres`` database; the demo's database gets a name of this run. Dropped at the end."""
    name = f"sg_demo_{os.getpid()}"
    monkeypatch.setattr(_embedded, "LOCAL_URL", empty_db_url)
    monkeypatch.setattr(_embedded, "DEMO_DATABASE", name)
    for variable in ("DATABASE_URL", "GRAPHILE_WORKER_SCHEMA", "SG_DEMO_EMBEDDED"):
        monkeypatch.delenv(variable, raising=False)
    try:
        yield name
    finally:
        postgresql_empty.rollback()
        postgresql_empty.autocommit = True
        postgresql_empty.execute(f'drop database if exists "{name}" with (force)')


def test_without_a_url_the_demo_creates_and_uses_a_database_of_its_own(
    demo_database: str,
    empty_db_url: str,
    postgresql_empty: psycopg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo"]) == EXIT_OK
    out = capsys.readouterr().out
    info = postgresql_empty.info
    assert out.startswith(
        f"Database: {demo_database}, the demo's own, on the local server at "
        f"{info.host}:{info.port}; created it just now\n"
        f"  To remove it later: dropdb -h {info.host} -p {info.port} -U {info.user} "
        f"{demo_database}\n"
        "Schema 'graphile_worker': installed\n"
    )
    assert out.rstrip().endswith("Done: 8 of 8 demo jobs completed.")
    # The server's other database (standing in for `postgres`) is untouched.
    assert _schemas(postgresql_empty) == set()
    demo_url = empty_db_url.rsplit("/", 1)[0] + f"/{demo_database}"
    with psycopg.connect(demo_url) as demo_db:
        assert _schemas(demo_db) == {"graphile_worker"}
        assert demo_db.execute("select count(*) from graphile_worker.jobs").fetchone() == (0,)
    assert main(["demo"]) == EXIT_OK
    again = capsys.readouterr().out
    assert again.startswith(f"Database: {demo_database}, the demo's own, on the local server")
    assert "created it just now" not in again
    assert "Schema 'graphile_worker': already installed" in again


def _remaining(db: psycopg.Connection) -> int:
    db.rollback()
    try:
        row = db.execute("select count(*) from graphile_worker_demo._private_jobs").fetchone()
    except psycopg.errors.UndefinedTable:
        return -1  # not installed yet
    assert row is not None
    return int(row[0])


def test_forever_counts_the_jobs_that_ran(
    empty_db_url: str, postgresql_empty: psycopg.Connection, tmp_path: Path
) -> None:
    db = postgresql_empty
    log_path = tmp_path / "demo.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sqlalchemy_graphile", "-c", empty_db_url, "demo", "--forever"],
            env=_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        with reaped(process):
            wait_until(lambda: "Running until Ctrl-C" in log_path.read_text(), process, log_path)
            wait_until(lambda: _remaining(db) == 0, process, log_path)
            db.execute(
                "select graphile_worker_demo.add_job('demo_greet',"
                " json_build_object('name', n::text)) from generate_series(1, 2) as n"
            )
            db.commit()
            wait_until(lambda: _remaining(db) == 0, process, log_path)
            status = terminate(process, log_path)
    output = log_path.read_text()
    assert status == 0, output
    assert "Hello, 1!" in output
    assert "Hello, 2!" in output
    assert output.rstrip().endswith("Done: 8 of 8 demo jobs completed, and 2 other job(s)."), output
