"""``run_jobs`` and a real worker process agree: the same jobs, run once in a test's
rolled-back transaction and once by ``sqlalchemy-graphile run --once`` on committed rows,
run the same task code and leave the same rows (attempts, errors, kept batch items,
follow-up jobs, unlocked queues)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, pool, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from sqlalchemy_graphile import JobHelpers, JobSpec
from sqlalchemy_graphile.tasks import AnyTaskType
from sqlalchemy_graphile.testing import run_jobs

from . import _agreement_tasks as tasks

ROOT = Path(__file__).resolve().parents[2]
TASKS_MODULE = "tests.integration._agreement_tasks"
TASKS: list[AnyTaskType] = [tasks.Deliver, tasks.Register, tasks.Tally, tasks.Thumbnail]

_ROWS = """
select tasks.identifier, job_queues.queue_name, cast(jobs.payload as text), jobs.priority,
  jobs.attempts, jobs.max_attempts, jobs.last_error, jobs.key, jobs.locked_by,
  jobs.locked_at, jobs.run_at > jobs.created_at as pushed_back
from graphile_worker._private_jobs as jobs
join graphile_worker._private_tasks as tasks on tasks.id = jobs.task_id
left join graphile_worker._private_job_queues as job_queues on job_queues.id = jobs.job_queue_id
"""
_LOCKED_QUEUES = (
    "select count(*) from graphile_worker._private_job_queues where locked_by is not null"
)


def add_the_jobs(session: Session) -> None:
    helpers = JobHelpers(session)
    helpers.add_job(tasks.Deliver(to="ada@example.com"), JobSpec(queue_name="mail", job_key="ada"))
    helpers.add_job(tasks.Deliver(to="bounce@example.com"), JobSpec(queue_name="mail"))
    helpers.add_job(tasks.Deliver(to="bounce-once@example.com"), JobSpec(max_attempts=1))
    helpers.add_batch_job([tasks.Tally(event="a"), tasks.Tally(event="bad b")])
    helpers.add_job(tasks.Register(email="bob@example.com"))
    helpers.add_raw_job("agree_deliver", {"wrong": 1})  # does not fit: no retry can help
    later = datetime.now(UTC) + timedelta(hours=1)
    helpers.add_job(tasks.Thumbnail(image=1), JobSpec(run_at=later))
    helpers.add_job(tasks.Thumbnail(image=2), JobSpec(priority=3))
    helpers.add_raw_job("agree_unknown", {"n": 1})  # no task for it: left alone
    # Earlier attempts push a failure's retry minutes away (exp(6) s instead of exp(1) s), so
    # neither side runs a failed job a second time, however slowly the worker process runs.
    session.execute(
        text("update graphile_worker._private_jobs set attempts = 5 where max_attempts > 6")
    )


def state(connection: Connection) -> tuple[list[tuple[Any, ...]], int]:
    """The jobs (without ids and times), sorted, and how many queues are locked."""
    rows = []
    for (
        identifier,
        queue,
        payload,
        *numbers,
        error,
        key,
        locked_by,
        locked_at,
        pushed_back,
    ) in connection.execute(text(_ROWS)):
        row = (identifier, queue, json.loads(payload), *numbers, _no_id(error), key)
        rows.append((*row, locked_by, locked_at, pushed_back))
    rows.sort(key=lambda row: (row[0], json.dumps(row[2], sort_keys=True)))
    locked = connection.execute(text(_LOCKED_QUEUES)).scalar_one()
    return rows, int(locked)


def _no_id(error: str | None) -> str | None:
    """An error message without the job id it may name (ids differ between the runs)."""
    return None if error is None else re.sub(r"\bjob \d+", "job N", error)


def ran(log: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return sorted(lines, key=lambda line: json.dumps(line, sort_keys=True))


def with_run_jobs(db_url: str) -> tuple[list[tuple[Any, ...]], int]:
    """Add the jobs and run them on psycopg2 in a transaction that is rolled back; the
    state before the rollback."""
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with engine.connect() as connection:
        transaction = connection.begin()
        with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
            add_the_jobs(session)
            session.commit()  # ends its savepoint only
            run_jobs(session, TASKS)
            found = state(connection)
        transaction.rollback()
    engine.dispose()
    return found


async def with_run_jobs_async(db_url: str) -> tuple[list[tuple[Any, ...]], int]:
    """As :func:`with_run_jobs`, on asyncpg with an async session."""
    engine = create_async_engine(
        db_url.replace("postgresql://", "postgresql+asyncpg://", 1), poolclass=pool.NullPool
    )
    async with engine.connect() as connection:
        transaction = await connection.begin()
        async with AsyncSession(
            bind=connection, join_transaction_mode="create_savepoint"
        ) as session:
            await session.run_sync(add_the_jobs)
            await session.commit()
            await run_jobs(session, TASKS)
            found = await connection.run_sync(state)
        await transaction.rollback()
    await engine.dispose()
    return found


def with_a_worker_process(db_url: str) -> tuple[list[tuple[Any, ...]], int]:
    """Add the jobs, commit, run a worker process until no job is due; the state after."""
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with Session(engine) as session:
        add_the_jobs(session)
        session.commit()
    command = [sys.executable, "-m", "sqlalchemy_graphile", "-c", db_url, "run", "--once"]
    subprocess.run(
        [*command, "--no-migrate", "--tasks", TASKS_MODULE],
        cwd=ROOT,
        env=os.environ,
        check=True,
        timeout=60,
    )
    with engine.connect() as connection:
        found = state(connection)
    engine.dispose()
    return found


@pytest.mark.parametrize("driver", ["psycopg2", "asyncpg"])
async def test_run_jobs_and_a_worker_process_leave_the_same_rows(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, driver: str
) -> None:
    monkeypatch.setenv("RAN_LOG", str(tmp_path / "run_jobs.jsonl"))
    if driver == "asyncpg":
        in_test = await with_run_jobs_async(db_url)
    else:
        in_test = with_run_jobs(db_url)
    monkeypatch.setenv("RAN_LOG", str(tmp_path / "worker.jsonl"))
    by_worker = with_a_worker_process(db_url)

    rows, locked_queues = by_worker
    assert (rows, locked_queues) == in_test
    assert locked_queues == 0
    assert ran(tmp_path / "worker.jsonl") == ran(tmp_path / "run_jobs.jsonl")
    # What the rows say (attempts, max_attempts, last_error, key), so that agreeing on
    # nothing cannot pass.
    left = {(row[0], json.dumps(row[2])): row[4:8] for row in rows}
    assert left == {  # attempts: the 5 set by add_the_jobs, plus the runs
        ("agree_deliver", '{"to": "bounce@example.com"}'): (
            6,
            25,
            "ValueError: bounce@example.com bounced",
            None,
        ),
        ("agree_deliver", '{"to": "bounce-once@example.com"}'): (
            1,
            1,
            "ValueError: bounce-once@example.com bounced",
            None,
        ),
        ("agree_deliver", '{"wrong": 1}'): (
            25,
            25,
            "PayloadValidationError: the payload of job N does not fit Deliver: to: Field required",
            None,
        ),
        ("agree_tally", '[{"event": "bad b"}]'): (6, 25, "Batch failures:\nrefused bad b", None),
        ("agree_thumbnail", '{"image": 1}'): (5, 25, None, None),
        ("agree_unknown", '{"n": 1}'): (5, 25, None, None),
    }
    assert len(ran(tmp_path / "worker.jsonl")) == 8
