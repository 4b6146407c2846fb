"""Worker processes given a URL string run jobs without ever importing SQLAlchemy or
Alembic: a :class:`Worker` of the API, the command line's ``run --once --no-migrate`` and
the benchmark's worker child.

Each runs in a fresh interpreter (this test process has imported both) and reports the
modules it loaded once its run is over. The start-up check's ledger reader (asyncpg) and
:func:`read_ledger` (SQLAlchemy) must read every ledger alike.
"""

from __future__ import annotations

import asyncpg
import psycopg
import pytest
from sqlalchemy import create_engine

from sqlalchemy_graphile.migrations import LedgerState, read_ledger
from sqlalchemy_graphile.worker._schema_check import _read_ledger

from .._imports import loaded_after

pytestmark = pytest.mark.schema_flavours("ours", "node")


def add_jobs(db: psycopg.Connection, count: int) -> None:
    db.execute(
        "select graphile_worker.add_job('log_if_999', json_build_object('id', i))"
        " from generate_series(1, %s) i",
        (count,),
    )


def remaining(db: psycopg.Connection) -> int:
    row = db.execute("select count(*) from graphile_worker._private_jobs").fetchone()
    assert row is not None
    return int(row[0])


def test_cli_run_once_without_migrate(db_url: str, db: psycopg.Connection) -> None:
    add_jobs(db, 5)
    code = f"""
from sqlalchemy_graphile.cli import main
status = main(["run", "-c", {db_url!r}, "--tasks", "benchmarks.tasks", "--once",
               "--no-migrate", "--name", "lean worker"])
assert status == 0, status
"""
    assert loaded_after(code) == []
    assert remaining(db) == 0


def test_a_worker_from_a_url_string_runs_a_job(db_url: str, db: psycopg.Connection) -> None:
    add_jobs(db, 1)
    url = db_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    code = f"""
import asyncio, sys
from benchmarks.tasks import LogIf999
from sqlalchemy_graphile import Worker

seen_in_job = []

class Watched(LogIf999):
    async def run(self, ctx):
        seen_in_job.append(sorted(m for m in sys.modules if m.split(".")[0] == "sqlalchemy"))
        await super().run(ctx)

url = {url!r} + "?application_name=lean&sslmode=disable"
asyncio.run(Worker(url, tasks=[Watched], handle_signals=False).run_once())
assert seen_in_job == [[]], seen_in_job
"""
    assert loaded_after(code) == []
    assert remaining(db) == 0


def test_benchmark_worker_child(db_url: str, db: psycopg.Connection) -> None:
    add_jobs(db, 50)
    code = f"""
from benchmarks._pyproc import main
main(["once", {db_url!r}, "4", "batched"])
"""
    assert loaded_after(code) == []
    assert remaining(db) == 0


async def both_readings(url: str, schema: str) -> tuple[LedgerState, LedgerState]:
    """The ledger as the worker's start-up check reads it (asyncpg) and as
    :func:`read_ledger` reads it (SQLAlchemy)."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        on_asyncpg = await _read_ledger(pool, schema)
    finally:
        await pool.close()
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            on_sqlalchemy = read_ledger(connection, schema)
    finally:
        engine.dispose()
    return on_asyncpg, on_sqlalchemy


async def test_both_ledger_readers_agree(
    db_url: str, empty_db_url: str, schema_flavour: str
) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("create schema legacy")
        conn.execute("create table legacy.migrations (id integer primary key)")
        conn.execute("insert into legacy.migrations (id) select generate_series(1, 18)")
    cases = [
        # Node installs revision 19; we and the Rust port go on to 20.
        (
            db_url,
            "graphile_worker",
            LedgerState(True, True, 19 if schema_flavour == "node" else 20, 19),
        ),
        (db_url, "absent", LedgerState(exists=False)),
        (empty_db_url, "legacy", LedgerState(True, False, 18, None)),
    ]
    for url, schema, expected in cases:
        assert await both_readings(url, schema) == (expected, expected)
