"""Helpers for the dashboard tests: seeding jobs in known states with plain SQL, reading the
state counts back, and an HTTP client on the app (no server needed)."""

from __future__ import annotations

from typing import Any

import httpx
import markupsafe
import psycopg
from psycopg import sql

from sqlalchemy_graphile.dashboard import DashboardApp

STATES = ("ready", "scheduled", "locked", "failed")


def client(app: DashboardApp, **options: Any) -> httpx.AsyncClient:
    """An HTTP client calling ``app`` in process, as a browser on this machine would."""
    options.setdefault("base_url", "http://127.0.0.1")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), **options)


def escaped(text: str) -> str:
    """``text`` as the dashboard's templates write it into HTML."""
    return str(markupsafe.escape(text))


def add_job(
    db: psycopg.Connection, identifier: str, schema: str = "graphile_worker", **options: Any
) -> int:
    """Add a job with the schema's ``add_job`` function; returns its id."""
    names = [sql.SQL("{} := {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in options]
    statement = sql.SQL("select id from {}.add_job({})").format(
        sql.Identifier(schema), sql.SQL(", ").join([sql.Placeholder("identifier"), *names])
    )
    row = db.execute(statement, {"identifier": identifier, **options}).fetchone()
    assert row is not None
    return int(row[0])


def lock(db: psycopg.Connection, job_id: int, worker: str, schema: str = "graphile_worker") -> None:
    """Lock a job (and its queue, if any) as a worker does."""
    db.execute(
        sql.SQL(
            "update {}._private_jobs set locked_at = now(), locked_by = %s where id = %s"
        ).format(sql.Identifier(schema)),
        (worker, job_id),
    )
    db.execute(
        sql.SQL(
            "update {s}._private_job_queues set locked_at = now(), locked_by = %s "
            "where id = (select job_queue_id from {s}._private_jobs where id = %s)"
        ).format(s=sql.Identifier(schema)),
        (worker, job_id),
    )


def fail(
    db: psycopg.Connection, job_id: int, error: str = "boom", schema: str = "graphile_worker"
) -> None:
    """Make a job permanently failed, with ``error`` as its last error."""
    db.execute(
        sql.SQL(
            "update {}._private_jobs set attempts = max_attempts, last_error = %s where id = %s"
        ).format(sql.Identifier(schema)),
        (error, job_id),
    )


def db_counts(db: psycopg.Connection, schema: str = "graphile_worker") -> dict[str, int]:
    """The number of jobs in each state, by the Rust port's definitions, read directly."""
    row = db.execute(
        sql.SQL(
            """
            select count(*) filter (where locked_at is null and attempts < max_attempts
                                      and run_at <= now()),
                   count(*) filter (where locked_at is null and attempts < max_attempts
                                      and run_at > now()),
                   count(*) filter (where locked_at is not null),
                   count(*) filter (where locked_at is null and attempts >= max_attempts)
              from {}._private_jobs
            """
        ).format(sql.Identifier(schema))
    ).fetchone()
    assert row is not None
    return dict(zip(STATES, (int(v) for v in row), strict=True))


def seed_states(db: psycopg.Connection) -> dict[str, list[int]]:
    """Jobs in every state, of two tasks and two queues; returns the ids by state."""
    ids: dict[str, list[int]] = {state: [] for state in STATES}
    for n in range(3):
        ids["ready"].append(add_job(db, "send_email", payload=f'{{"n": {n}}}', queue_name="mail"))
    ids["ready"].append(add_job(db, "resize_image", payload='{"n": 9}'))
    for n in range(2):
        ids["scheduled"].append(
            add_job(db, "resize_image", payload=f'{{"n": {n}}}', run_at="2999-01-01T00:00:00Z")
        )
    locked = add_job(db, "send_email", payload='{"n": 5}', queue_name="reports")
    lock(db, locked, "worker-a")
    ids["locked"].append(locked)
    for n in range(2):
        failed = add_job(db, "resize_image", payload=f'{{"n": {10 + n}}}', max_attempts=3)
        fail(db, failed, f"ValueError: bad image {n}")
        ids["failed"].append(failed)
    return ids
