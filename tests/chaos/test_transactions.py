"""Jobs belong to the transaction that adds them, with a worker process running
(reliability tests 1 and 2)."""

from __future__ import annotations

import asyncio
from datetime import datetime

import psycopg
import pytest
from sqlalchemy import func, pool, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from sqlalchemy_graphile import AsyncJobHelpers, JobHelpers, JobSpec

from . import _ledger as ledger
from ._tasks import Sleep
from ._workers import Workers, wait_for
from .conftest import ChaosDatabase

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]

BARRIER = "barrier"


def job(key: str) -> tuple[Sleep, JobSpec]:
    return Sleep(tag=key), JobSpec(job_key=key)


def add_and_roll_back_sync(chaos_db: ChaosDatabase, prefix: str) -> None:
    with chaos_db.engine() as engine:
        with Session(engine) as session:
            session.begin()
            JobHelpers(session).add_job(*job(f"{prefix}-rolled-back"))
            session.rollback()
        with Session(engine) as session, session.begin():
            helpers = JobHelpers(session)
            savepoint = session.begin_nested()
            helpers.add_job(*job(f"{prefix}-savepoint"))
            savepoint.rollback()
            helpers.add_job(*job(f"{prefix}-committed"))


async def add_and_roll_back_async(chaos_db: ChaosDatabase, prefix: str) -> None:
    url = chaos_db.url.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with AsyncSession(engine) as session:
            await session.begin()
            await AsyncJobHelpers(session).add_job(*job(f"{prefix}-rolled-back"))
            await session.rollback()
        async with AsyncSession(engine) as session, session.begin():
            helpers = AsyncJobHelpers(session)
            savepoint = await session.begin_nested()
            await helpers.add_job(*job(f"{prefix}-savepoint"))
            await savepoint.rollback()
            await helpers.add_job(*job(f"{prefix}-committed"))
    finally:
        await engine.dispose()


def notifications_until_barrier(probe: psycopg.Connection) -> list[str]:
    """The ``jobs:insert`` payloads the probe received before the barrier notification."""
    payloads: list[str] = []
    for notify in probe.notifies(timeout=30):
        if notify.payload == BARRIER:
            return payloads
        payloads.append(notify.payload)
    raise AssertionError("the barrier notification did not arrive")


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
def test_a_rollback_leaves_no_job_and_wakes_no_worker(
    chaos_db: ChaosDatabase, workers: Workers, driver: str
) -> None:
    """Reliability test 1: a rolled-back transaction, and a rolled-back savepoint followed
    by a commit, with ``Session`` (psycopg) and ``AsyncSession`` (asyncpg)."""
    workers.start("rollback")
    with chaos_db.connect() as db, chaos_db.connect() as probe:
        probe.execute('listen "jobs:insert"')
        if driver == "psycopg":
            add_and_roll_back_sync(chaos_db, driver)
        else:
            asyncio.run(add_and_roll_back_async(chaos_db, driver))
        # Notifications arrive in commit order: this one comes after any of the adds.
        db.execute("select pg_notify('jobs:insert', %s)", (BARRIER,))
        payloads = notifications_until_barrier(probe)
        assert len(payloads) == 1, payloads  # the commit's, with its one job
        assert '"count":1' in payloads[0].replace(" ", "")

        def done() -> bool:
            (left,) = db.execute("select count(*) from graphile_worker._private_jobs").fetchone()  # type: ignore[misc]
            return left == 0 and sum(ledger.finishes(db).values()) == 1

        # The committed job ran and is gone; the others never existed.
        wait_for(done, "the committed job to run and be completed")
        (committed,) = ledger.finishes(db)
        keys = db.execute("select event, job_key from chaos.ledger order by id").fetchall()
        assert keys == [("start", f"{driver}-committed"), ("finish", f"{driver}-committed")]
        assert ledger.dupes(db, committed) == 0


@pytest.mark.parametrize("listen", [True, False], ids=["listen", "poll"])
def test_a_job_is_invisible_until_its_transaction_commits(
    chaos_db: ChaosDatabase, workers: Workers, listen: bool
) -> None:
    """Reliability test 2. With LISTEN the poll interval is long, so only the commit's
    notification can explain a prompt pickup."""
    workers.start(
        "commit", poll_interval=20.0 if listen else 0.5, options=[] if listen else ["--no-listen"]
    )
    with chaos_db.connect() as db, chaos_db.engine() as engine:

        def run_decoy() -> None:
            (decoy,) = chaos_db.add_jobs([(Sleep(tag="decoy"), None)])
            wait_for(lambda: ledger.finishes(db)[decoy], "a decoy job to run")

        run_decoy()  # the worker is up
        with Session(engine) as session, session.begin():
            pending = JobHelpers(session).add_job(Sleep(tag="pending")).id
            for _ in range(3):  # the worker fetches at least three times meanwhile
                run_decoy()
            assert ledger.starts(db)[pending] == 0
            commit_at: datetime = session.execute(select(func.clock_timestamp())).scalar_one()
        wait_for(lambda: ledger.finishes(db)[pending], "the committed job to run", within=10)
        (started_at,) = db.execute(
            "select at from chaos.ledger where job_id = %s and event = 'start'", (pending,)
        ).fetchone()  # type: ignore[misc]
        assert started_at > commit_at
        assert ledger.dupes(db, pending) == 0
