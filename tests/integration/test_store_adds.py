"""Adding jobs through the worker's job store (asyncpg), which runs the same add logic as
the helpers (SQLAlchemy): the same rows come back, a key locked in the middle of the call
is retried in the call's transaction, and a failed add leaves its connection clean.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import psycopg
import pytest
from sqlalchemy import create_engine

from sqlalchemy_graphile import Job, JobKeyMode, JobSpec, RawJobSpec, _job_input, _sql_jobs
from sqlalchemy_graphile._catalog import catalog_for
from sqlalchemy_graphile._store._asyncpg import AsyncpgJobStore

from .test_helpers_concurrency import (
    DEADLINE,
    calls_needed,
    hold_locked_job,
    holder,
    wait_until_blocked,
)

pytestmark = pytest.mark.schema_flavours

__all__ = ["holder"]  # a fixture


class Store:
    """An :class:`AsyncpgJobStore` on a one-connection pool, and the statements it sent."""

    def __init__(self, pool: asyncpg.Pool, statements: list[str]) -> None:
        self.pool = pool
        self.store = AsyncpgJobStore(pool, catalog_for("graphile_worker"), "sgpool-test")
        self.statements = statements

    def add_calls(self) -> int:
        return sum(".add_job(" in s or ".add_jobs(" in s for s in self.statements)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    statements: list[str] = []

    async def init(connection: asyncpg.Connection) -> None:
        connection.add_query_logger(lambda record: statements.append(record.query))

    async def keep_session(connection: asyncpg.Connection) -> None:
        """As the worker's pool: no reset when a connection is released."""

    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=1, init=init, reset=keep_session)
    yield Store(pool, statements)
    await pool.close()


RUN_AT = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)


def _new_jobs() -> list[_job_input.NewJob]:
    """Jobs of new tasks in new queues, two of each named by nothing but a lookup, keyed and
    not, with flags, a run_at and a priority."""
    return _job_input.from_raw_specs(
        [
            RawJobSpec("first", {"n": 1}, JobSpec(queue_name="q1", flags=["a", "b"])),
            RawJobSpec("second", {"n": 2}, JobSpec(queue_name="q2", run_at=RUN_AT)),
            RawJobSpec("third", [1, 2], JobSpec(job_key="k3", priority=3)),
            RawJobSpec("first", None),
        ]
    )


def _compared(job: Job) -> tuple[object, ...]:
    """What two adds of the same job share (not the id, nor the times set by the clock)."""
    return (
        job.task_identifier,
        job.queue_name,
        job.payload_json,
        job.priority,
        job.max_attempts,
        job.key,
        job.flags,
        job.attempts,
        job.revision,
        job.locked_by,
    )


async def test_the_store_and_the_helpers_add_the_same_jobs(
    store: Store, db_url: str, db: psycopg.Connection
) -> None:
    jobs = _new_jobs()
    from_store = await store.store.add_jobs(jobs)
    # One transaction on one connection: the add, then the lookups of the names the add
    # created (which its own joins cannot see).
    assert len(store.statements) == 5, store.statements
    begin, add, tasks, queues, commit = store.statements
    assert (begin, commit) == ("begin", "commit")
    assert ".add_jobs(" in add
    assert "_private_tasks" in tasks
    assert "_private_job_queues" in queues
    for table in ("_private_jobs", "_private_tasks", "_private_job_queues"):
        db.execute(f"delete from graphile_worker.{table}")
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as connection:
            from_helpers = _sql_jobs.add_jobs(connection, "graphile_worker", jobs, False)
    finally:
        engine.dispose()
    assert [_compared(job) for job in from_store] == [_compared(job) for job in from_helpers]
    assert [(job.task_identifier, job.queue_name) for job in from_store] == [
        ("first", "q1"),
        ("second", "q2"),
        ("third", None),
        ("first", None),
    ]
    assert from_store[1].run_at == from_helpers[1].run_at == RUN_AT


async def test_a_single_add_in_each_key_mode(store: Store, db: psycopg.Connection) -> None:
    first = await store.store.add_job(_job_input.from_raw("t", {"v": 1}, JobSpec(job_key="k")))
    replaced = await store.store.add_job(_job_input.from_raw("t", {"v": 2}, JobSpec(job_key="k")))
    deduped = await store.store.add_job(
        _job_input.from_raw(
            "other", {"v": 3}, JobSpec(job_key="k", job_key_mode=JobKeyMode.UNSAFE_DEDUPE)
        )
    )
    assert first.id == replaced.id == deduped.id
    assert (replaced.payload, replaced.revision) == ({"v": 2}, 1)
    assert (deduped.task_identifier, deduped.payload) == ("t", {"v": 2})  # kept as it was
    rows = db.execute("select count(*) from graphile_worker._private_jobs").fetchone()
    assert rows == (1,)


async def test_the_store_repeats_an_add_whose_key_gets_locked_mid_call(
    store: Store, db: psycopg.Connection, holder: psycopg.Connection, schema_flavour: str
) -> None:
    held_id = hold_locked_job(holder, "k")
    pid = await store.pool.fetchval("select pg_backend_pid()")
    store.statements.clear()
    adding = asyncio.create_task(
        store.store.add_job(_job_input.from_raw("mine", {"n": 1}, JobSpec(job_key="k")))
    )
    await wait_until_blocked(db, pid)
    holder.commit()  # the key now belongs to a committed, locked job
    job = await asyncio.wait_for(adding, DEADLINE)
    assert job.id != held_id
    assert (job.key, job.task_identifier, job.payload, job.revision) == ("k", "mine", {"n": 1}, 0)
    assert store.add_calls() == calls_needed(schema_flavour)
    # One transaction: begin, the add (repeated where needed), commit.
    assert (store.statements[0], store.statements[-1]) == ("begin", "commit")


async def test_a_failed_add_is_rolled_back_and_its_connection_reused(
    store: Store, db: psycopg.Connection
) -> None:
    db.execute(
        "create function graphile_worker.refuse() returns trigger language plpgsql as $$"
        " begin if new.key = 'second' then raise exception 'refused'; end if; return new; end $$"
    )
    db.execute(
        "create trigger refuse before insert on graphile_worker._private_jobs"
        " for each row execute function graphile_worker.refuse()"
    )
    jobs = _job_input.from_raw_specs(
        [
            RawJobSpec("t", {}, JobSpec(job_key="first")),
            RawJobSpec("t", {}, JobSpec(job_key="second")),
        ]
    )
    with pytest.raises(asyncpg.RaiseError, match="refused"):
        await store.store.add_jobs(jobs)
    # Nothing was added, and the pool's one connection is back with no transaction open.
    assert store.statements[-1] == "rollback"
    assert await store.pool.fetchval("select count(*) from graphile_worker._private_jobs") == 0
