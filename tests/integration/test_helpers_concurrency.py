"""Adding keyed jobs while other transactions and workers hold the same key.

When a keyed job is locked between the two steps of ``add_jobs`` (retire the locked job,
then upsert), Graphile Worker's SQL returns no row. The helpers must repeat the add in the
same transaction and always return a job.

On the ``rust`` schema flavour the port's ``add_jobs`` first takes an advisory lock per key,
which the holder below also took when it added its job: the add waits for the holder and
then succeeds at the first call, so there is nothing to repeat (:func:`calls_needed`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import create_engine, pool
from sqlalchemy.orm import Session

from sqlalchemy_graphile import (
    GraphileWorkerError,
    Job,
    JobHelpers,
    JobKeyMode,
    JobSpec,
    RawJobSpec,
    _sql_jobs,
)

from ._enqueue_drivers import Driver

pytestmark = pytest.mark.schema_flavours

DEADLINE = 20.0


@pytest.fixture
def holder(db_url: str) -> Iterator[psycopg.Connection]:
    """A second transaction that creates a keyed job and locks it, like a worker would."""
    connection = psycopg.connect(db_url)
    yield connection
    connection.close()


def hold_locked_job(holder: psycopg.Connection, key: str) -> int:
    row = holder.execute(
        "select id from graphile_worker.add_job('holder', job_key => %s)", [key]
    ).fetchone()
    assert row is not None
    holder.execute(
        "update graphile_worker._private_jobs set locked_at = now(), locked_by = 'pool-w',"
        " attempts = 1 where id = %s",
        [row[0]],
    )
    return int(row[0])


async def wait_until_blocked(db: psycopg.Connection, pid: int) -> None:
    """Poll pg_stat_activity until backend ``pid`` waits on a lock (with a deadline)."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        row = db.execute(
            "select wait_event_type from pg_stat_activity where pid = %s", [pid]
        ).fetchone()
        if row is not None and row[0] == "Lock":
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited on a lock")


def add_job_statements(driver: Driver) -> int:
    return sum(1 for s in driver.statements if ".add_job(" in s or ".add_jobs(" in s)


def calls_needed(schema_flavour: str) -> int:
    """Calls of the SQL function for an add that met a key locked mid-call."""
    return 1 if schema_flavour == "rust" else 2


@pytest.mark.parametrize("mode", [JobKeyMode.REPLACE, JobKeyMode.PRESERVE_RUN_AT])
async def test_add_job_repeats_when_the_key_gets_locked_mid_call(
    driver: Driver,
    db: psycopg.Connection,
    holder: psycopg.Connection,
    mode: JobKeyMode,
    schema_flavour: str,
) -> None:
    held_id = hold_locked_job(holder, "k")
    async with driver.transaction() as tx:
        pid = await tx.scalar("select pg_backend_pid()")
        adding = asyncio.create_task(
            tx.add_raw_job("mine", {"n": 1}, JobSpec(job_key="k", job_key_mode=mode))
        )
        await wait_until_blocked(db, pid)
        holder.commit()  # the key now belongs to a committed, locked job
        job = await asyncio.wait_for(adding, DEADLINE)
        await tx.commit()
    assert job.id != held_id
    assert (job.key, job.task_identifier, job.payload, job.revision) == ("k", "mine", {"n": 1}, 0)
    assert add_job_statements(driver) == calls_needed(schema_flavour)
    held = db.execute(
        "select key, attempts, max_attempts, locked_by from graphile_worker._private_jobs"
        " where id = %s",
        [held_id],
    ).fetchone()
    assert held == (None, 25, 25, "pool-w")  # retired: finishes its run, never retried


async def test_unsafe_dedupe_returns_the_locked_job(
    driver: Driver, db: psycopg.Connection, holder: psycopg.Connection
) -> None:
    held_id = hold_locked_job(holder, "k")
    async with driver.transaction() as tx:
        pid = await tx.scalar("select pg_backend_pid()")
        adding = asyncio.create_task(
            tx.add_raw_job("mine", {}, JobSpec(job_key="k", job_key_mode=JobKeyMode.UNSAFE_DEDUPE))
        )
        await wait_until_blocked(db, pid)
        holder.commit()
        job = await asyncio.wait_for(adding, DEADLINE)
        await tx.commit()
    # The holder's task row committed while the statement waited, so its join could not
    # see it; the name is read afterwards.
    assert (job.id, job.task_identifier, job.revision, job.locked_by) == (
        held_id,
        "holder",
        1,
        "pool-w",
    )


async def test_bulk_add_repeats_only_the_jobs_that_got_no_row(
    driver: Driver, db: psycopg.Connection, holder: psycopg.Connection, schema_flavour: str
) -> None:
    held_id = hold_locked_job(holder, "k2")
    specs = [
        RawJobSpec("mine", {"n": 1}, JobSpec(job_key="k1")),
        RawJobSpec("mine", {"n": 2}, JobSpec(job_key="k2")),
        RawJobSpec("mine", {"n": 3}),
        RawJobSpec("mine", {"n": 4}, JobSpec(job_key="k3")),
    ]
    async with driver.transaction() as tx:
        pid = await tx.scalar("select pg_backend_pid()")
        adding = asyncio.create_task(tx.add_raw_jobs(specs))
        await wait_until_blocked(db, pid)
        holder.commit()
        jobs = await asyncio.wait_for(adding, DEADLINE)
        await tx.commit()
    assert [(j.key, j.payload) for j in jobs] == [
        ("k1", {"n": 1}),
        ("k2", {"n": 2}),
        (None, {"n": 3}),
        ("k3", {"n": 4}),
    ]
    assert held_id not in {j.id for j in jobs}
    assert add_job_statements(driver) == calls_needed(schema_flavour)
    assert db.execute(
        "select count(*) from graphile_worker._private_jobs where key is not null"
    ).fetchone() == (3,)


def test_many_connections_adding_one_key_in_every_mode_always_get_a_job(db_url: str) -> None:
    """Six sessions add jobs on one key, cycling through the modes, while a "worker" keeps
    locking, completing and failing whatever holds the key. Every call returns a job."""
    engine = create_engine(
        db_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=pool.NullPool
    )
    modes = [JobKeyMode.REPLACE, JobKeyMode.PRESERVE_RUN_AT, JobKeyMode.UNSAFE_DEDUPE]
    results: list[Job] = []
    errors: list[BaseException] = []
    adders_done = threading.Event()
    start = threading.Barrier(7)

    def adder(n: int) -> None:
        try:
            start.wait(DEADLINE)
            for i in range(25):
                with Session(engine) as session, session.begin():
                    job = JobHelpers(session).add_raw_job(
                        "hot",
                        {"adder": n, "i": i},
                        JobSpec(job_key="hot", job_key_mode=modes[(n + i) % 3]),
                    )
                    results.append(job)
        except BaseException as error:  # collected and re-raised by the test
            errors.append(error)

    def worker() -> None:
        with psycopg.connect(db_url, autocommit=True) as connection:
            start.wait(DEADLINE)
            step = 0
            while not adders_done.is_set():
                step += 1
                locked = connection.execute(
                    "update graphile_worker._private_jobs set locked_at = now(),"
                    " locked_by = 'pool-stress', attempts = attempts + 1"
                    " where key = 'hot' and is_available returning id"
                ).fetchone()
                if locked is not None:
                    finish = (
                        "delete from graphile_worker._private_jobs where id = %s"
                        if step % 2
                        else "update graphile_worker._private_jobs set locked_at = null,"
                        " locked_by = null where id = %s"
                    )
                    connection.execute(finish, [locked[0]])

    threads = [threading.Thread(target=adder, args=(n,)) for n in range(6)]
    locker = threading.Thread(target=worker)
    for thread in [*threads, locker]:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE * 3)
    adders_done.set()
    locker.join(DEADLINE)
    engine.dispose()
    assert not errors, errors
    assert len(results) == 6 * 25
    assert all(isinstance(job, Job) and job.id is not None for job in results)
    # Every returned job held the key when it was returned (dedupe may return a retired
    # job only if it still had the key at that moment).
    assert {job.key for job in results} == {"hot"}
    with psycopg.connect(db_url) as connection:
        row = connection.execute(
            "select count(*) from graphile_worker._private_jobs"
            " where key = 'hot' and locked_at is null"
        ).fetchone()
    assert row is not None
    assert row[0] <= 1


async def test_add_gives_up_with_a_clear_error_when_attempts_run_out(
    monkeypatch: pytest.MonkeyPatch,
    db_url: str,
    db: psycopg.Connection,
    holder: psycopg.Connection,
    schema_flavour: str,
) -> None:
    """With a single attempt allowed, the lost race surfaces as our error naming the key,
    never as a ``None`` job. On the ``rust`` flavour the race cannot be lost: the add
    succeeds."""
    monkeypatch.setattr(_sql_jobs, "MAX_ADD_ATTEMPTS", 1)
    hold_locked_job(holder, "k")
    driver = Driver("psycopg", db_url)
    try:
        async with driver.transaction() as tx:
            pid = await tx.scalar("select pg_backend_pid()")
            adding = asyncio.create_task(tx.add_raw_job("t", {}, JobSpec(job_key="k")))
            await wait_until_blocked(db, pid)
            holder.commit()
            if schema_flavour == "rust":
                job = await asyncio.wait_for(adding, DEADLINE)
                assert (job.key, job.revision) == ("k", 0)
                return
            with pytest.raises(GraphileWorkerError, match="could not add the job with key 'k'"):
                await asyncio.wait_for(adding, DEADLINE)
    finally:
        await driver.dispose()
