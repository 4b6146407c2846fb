"""``doctor`` against real PostgreSQL: every check healthy, and unhealthy for real (an idle
transaction, a stale job, a skewed clock, a NOTIFY that cannot arrive through PgBouncer in
transaction mode, ...)."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import psycopg
import pytest
from sqlalchemy.engine import make_url

from sqlalchemy_graphile import ConfigurationError
from sqlalchemy_graphile._notify_check import notifications_arrive
from sqlalchemy_graphile.cli import main
from sqlalchemy_graphile.cli._doctor import EXIT_ERRORS, EXIT_HEALTHY, EXIT_WARNINGS
from sqlalchemy_graphile.doctor import Limits, diagnose

from .._pgbouncer import pgbouncer
from ._worker_support import add, eventually

DOCTOR_PAGE = Path(__file__).resolve().parents[2] / "docs" / "doctor.md"


def _through(db_url: str, port: int) -> str:
    return make_url(db_url).set(host="127.0.0.1", port=port).render_as_string(False)


@pytest.fixture
def idle_in_transaction(db_url: str) -> Iterator[int]:
    """A session of the test database left idle in an open transaction; yields its pid."""
    with psycopg.connect(db_url) as session:
        (pid,) = session.execute("select pg_backend_pid()").fetchone() or (0,)
        yield pid
        session.rollback()


async def test_a_healthy_database_passes_every_check(db_url: str) -> None:
    diagnosis = await diagnose(db_url)
    assert diagnosis.status == "healthy", diagnosis
    assert [f.check for f in diagnosis.findings] == [
        "schema",
        "listen",
        "connections",
        "transactions",
        "jobs_table",
        "stale_jobs",
        "clock",
    ]
    assert all(f.status == "ok" and f.fix is None for f in diagnosis.findings)
    schema = diagnosis.finding("schema")
    assert schema.details["revision"] == 20
    assert schema.details["locking_add_jobs"] is False
    assert schema.details["worker_recovery_table"] is True


async def test_a_missing_schema_is_an_error_and_the_job_checks_are_skipped(
    empty_db_url: str,
) -> None:
    diagnosis = await diagnose(empty_db_url)
    assert diagnosis.status == "errors"
    schema = diagnosis.finding("schema")
    assert schema.status == "error"
    assert "is not installed" in schema.summary
    assert schema.fix is not None
    assert "sqlalchemy-graphile migrate" in schema.fix
    assert diagnosis.finding("jobs_table").status == "skipped"
    assert diagnosis.finding("stale_jobs").status == "skipped"
    assert diagnosis.finding("listen").status == "ok"


async def test_the_schema_check_knows_node_and_rust_ledgers(
    db_url: str, db: psycopg.Connection
) -> None:
    db.execute("drop table graphile_worker._private_workers")
    missing = (await diagnose(db_url)).finding("schema")
    assert (missing.status, missing.details["revision"]) == ("warning", 20)
    db.execute("delete from graphile_worker.migrations where id = 20")
    node = (await diagnose(db_url)).finding("schema")
    assert (node.status, node.details["revision"]) == ("warning", 19)
    assert "without the worker-recovery objects" in node.summary
    assert node.fix is not None
    assert "sqlalchemy-graphile migrate" in node.fix
    db.execute("insert into graphile_worker.migrations (id, breaking) values (20, false)")
    db.execute("create table graphile_worker._private_workers (id text primary key)")
    rust = (await diagnose(db_url)).finding("schema")
    assert (rust.status, rust.details["revision"]) == ("ok", 20)
    assert "worker-recovery" in rust.summary
    db.execute("insert into graphile_worker.migrations (id, breaking) values (21, false)")
    newer = (await diagnose(db_url)).finding("schema")
    assert newer.status == "warning"
    db.execute("insert into graphile_worker.migrations (id, breaking) values (22, true)")
    breaking = (await diagnose(db_url)).finding("schema")
    assert breaking.status == "error"
    assert breaking.fix is not None
    assert "Upgrade sqlalchemy-graphile" in breaking.fix


async def test_notifications_arrive_between_two_connections_and_not_across_databases(
    db_url: str, empty_db_url: str
) -> None:
    listener = await asyncpg.connect(db_url)
    same = await asyncpg.connect(db_url)
    elsewhere = await asyncpg.connect(empty_db_url)
    try:
        assert await notifications_arrive(listener, same)
        # NOTIFY only reaches listeners of its own database: this one cannot arrive.
        assert not await notifications_arrive(listener, elsewhere, within=0.2)
        channels = await listener.fetchval("select count(*) from pg_listening_channels()")
        assert channels == 0
    finally:
        for connection in (listener, same, elsewhere):
            await connection.close()


async def test_listen_through_pgbouncer_in_transaction_mode_is_an_error(db_url: str) -> None:
    url = make_url(db_url)
    assert url.host is not None
    assert url.port is not None
    with pgbouncer(url.host, url.port, pool_mode="transaction") as port:
        diagnosis = await diagnose(_through(db_url, port), limits=Limits(listen_timeout=1.0))
    listen = diagnosis.finding("listen")
    assert listen.status == "error"
    assert listen.fix is not None
    assert "session-mode URL" in listen.fix
    assert diagnosis.finding("schema").status == "ok"  # everything else works through it
    assert diagnosis.status == "errors"


async def test_listen_through_pgbouncer_in_session_mode_works(db_url: str) -> None:
    url = make_url(db_url)
    assert url.host is not None
    assert url.port is not None
    with pgbouncer(url.host, url.port, pool_mode="session") as port:
        diagnosis = await diagnose(_through(db_url, port))
    assert diagnosis.finding("listen").status == "ok"


async def test_connections_beyond_max_connections(db_url: str, db: psycopg.Connection) -> None:
    (max_connections, reserved) = db.execute(
        "select current_setting('max_connections')::int,"
        " current_setting('superuser_reserved_connections')::int"
    ).fetchone() or (0, 0)
    usable = max_connections - reserved
    too_many = (await diagnose(db_url, workers=usable, max_pool_size=1)).finding("connections")
    assert too_many.status == "error"
    assert too_many.details["needed"] == 2 * usable
    tight = (await diagnose(db_url, workers=0, app_connections=usable - 1)).finding("connections")
    assert tight.status == "warning"
    assert tight.fix is not None
    assert "max_connections" in tight.fix
    with pytest.raises(ConfigurationError, match="max_pool_size"):
        await diagnose(db_url, max_pool_size=0)


async def test_an_idle_transaction_holding_back_vacuum_is_reported(
    db_url: str, idle_in_transaction: int
) -> None:
    quiet = await diagnose(db_url)
    assert quiet.finding("transactions").status == "ok"  # not idle for a minute yet
    diagnosis = await diagnose(db_url, limits=Limits(idle_in_transaction=0))
    finding = diagnosis.finding("transactions")
    assert finding.status == "warning"
    assert [s["pid"] for s in finding.details["sessions"]] == [idle_in_transaction]
    assert finding.details["sessions"][0]["state"] == "idle in transaction"
    assert f"pid {idle_in_transaction}" in finding.summary
    assert finding.fix is not None
    assert "idle_in_transaction_session_timeout" in finding.fix
    assert diagnosis.status == "warnings"


async def test_a_jobs_table_full_of_dead_rows_is_reported(
    db_url: str, db: psycopg.Connection
) -> None:
    db.execute("alter table graphile_worker._private_jobs set (autovacuum_enabled = false)")
    db.execute(
        "select graphile_worker.add_jobs(array(select row('t', '{}'::json, null, null, null,"
        " null, null, null)::graphile_worker.job_spec from generate_series(1, 500)))"
    )
    db.execute("delete from graphile_worker._private_jobs")
    db.execute("select pg_stat_force_next_flush()")

    def dead_rows() -> bool:
        row = db.execute(
            "select n_dead_tup from pg_stat_user_tables where relname = '_private_jobs'"
            " and schemaname = 'graphile_worker'"
        ).fetchone()
        return row is not None and row[0] >= 500

    await eventually(dead_rows)
    assert (await diagnose(db_url)).finding("jobs_table").status == "ok"  # below 10 000
    finding = (await diagnose(db_url, limits=Limits(dead_rows=500))).finding("jobs_table")
    assert finding.status == "warning"
    assert finding.details["dead_rows"] >= 500
    assert finding.details["dead_share"] == 1.0
    assert finding.fix is not None
    assert "VACUUM" in finding.fix


async def test_jobs_no_worker_handles_are_reported(db_url: str, db: psycopg.Connection) -> None:
    add(db, "fresh", "{}")
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    add(db, "orphan", "{}", run_at=hour_ago)
    add(db, "orphan", "{}", run_at=hour_ago)
    # Waiting as long, but its task is running (a worker handles it) ...
    running = add(db, "busy", "{}", run_at=hour_ago)
    add(db, "busy", "{}", run_at=hour_ago)
    db.execute(
        "update graphile_worker._private_jobs set locked_at = now(), locked_by = 'w' where id = %s",
        (running,),
    )
    # ... or behind a job of its named queue that is running.
    add(db, "queued", "{}", run_at=hour_ago, queue_name="serial")
    db.execute("update graphile_worker._private_job_queues set locked_at = now(), locked_by = 'w'")
    diagnosis = await diagnose(db_url)
    finding = diagnosis.finding("stale_jobs")
    assert finding.status == "warning"
    assert [(r["task"], r["ready"]) for r in finding.details["identifiers"]] == [("orphan", 2)]
    assert "'orphan' (2 ready" in finding.summary
    assert finding.fix is not None
    assert "IDENTIFIER" in finding.fix


@pytest.mark.parametrize(
    ("skew", "status", "direction"),
    [(0, "ok", None), (5, "warning", "ahead of"), (-5, "warning", "behind"), (120, "error", None)],
)
async def test_clock_skew_between_app_and_database(
    db_url: str, skew: float, status: str, direction: str | None
) -> None:
    def skewed() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=skew)

    finding = (await diagnose(db_url, clock=skewed)).finding("clock")
    assert finding.status == status
    assert abs(finding.details["skew_seconds"] - skew) < 0.5
    if direction is not None:
        assert direction in finding.summary


def test_the_command_exits_with_the_verdict_and_prints_json(
    db_url: str, empty_db_url: str, db: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", db_url, "doctor"]) == EXIT_HEALTHY
    assert capsys.readouterr().out.rstrip().endswith("healthy")
    add(db, "orphan", "{}", run_at=datetime.now(UTC) - timedelta(hours=1))
    assert main(["-c", db_url, "doctor", "--json"]) == EXIT_WARNINGS
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "warnings"
    stale = next(c for c in report["checks"] if c["check"] == "stale_jobs")
    assert stale["status"] == "warning"
    assert stale["fix"]
    assert main(["-c", empty_db_url, "doctor", "--workers", "2"]) == EXIT_ERRORS
    out = capsys.readouterr().out
    assert "ERROR    schema" in out
    assert "fix: Install it" in out


async def test_the_python_example_of_the_doctor_page_runs(
    db_url: str, db: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    page = DOCTOR_PAGE.read_text(encoding="utf-8")
    block = re.search(r"```python\n(.*?)```", page, flags=re.DOTALL)
    assert block is not None
    code = block.group(1).replace("postgresql://app@db/app", db_url)
    assert "await diagnose(" in code
    add(db, "orphan", "{}", run_at=datetime.now(UTC) - timedelta(hours=1))
    namespace: dict[str, object] = {}
    exec("async def example():\n" + textwrap.indent(code, "    "), namespace)
    await namespace["example"]()  # type: ignore[operator]
    printed = capsys.readouterr().out
    assert "stale_jobs" in printed
    assert "'orphan' (1 ready" in printed
