"""Workers that die without a word (reliability tests 6 and 9).

There is no heartbeat recovery: a job locked by a dead worker stays locked until the
stale-lock sweep (locks older than four hours) or until someone who knows the worker is
dead runs ``force_unlock_workers`` with its id. These tests use both tools and check that
every job then runs, and how often.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest

from sqlalchemy_graphile import JobSpec, Worker, WorkerUtils

from . import _ledger as ledger
from ._ledger import LEDGER_URL_ENV
from ._tasks import CRASH_STATUS, Crash, Sleep
from ._workers import ROOT, WorkerProcess, Workers, wait_for
from .conftest import ChaosDatabase

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]


def locked_ids(chaos_db: ChaosDatabase, pool_id: str) -> set[int]:
    with chaos_db.connect() as db:
        rows = db.execute(
            "select id from graphile_worker._private_jobs where locked_by = %s", (pool_id,)
        ).fetchall()
    return {job_id for (job_id,) in rows}


def all_finished(chaos_db: ChaosDatabase, job_ids: list[int]) -> bool:
    with chaos_db.connect() as db:
        return not ledger.no_loss(db, job_ids)


async def force_unlock(url: str, pool_ids: list[str]) -> None:
    async with WorkerUtils(url) as utils:
        await utils.force_unlock_workers(pool_ids)


async def sweep_and_run(chaos_db: ChaosDatabase, job_ids: list[int]) -> None:
    """Run a worker whose stale-lock sweep fires within a second until the jobs finish."""
    worker = Worker(
        chaos_db.url,
        tasks=[Sleep],
        local_queue_size=10,
        poll_interval=0.5,
        min_reset_locked_interval=1.0,
        max_reset_locked_interval=1.0,
        handle_signals=False,
    )
    async with worker:
        # The jobs finish in other connections: there is nothing to await but the database.
        while not all_finished(chaos_db, job_ids):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("recovery", ["force_unlock_workers", "stale_lock_sweep"])
def test_kill_with_a_full_local_queue(
    chaos_db: ChaosDatabase, workers: Workers, recovery: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reliability test 6: SIGKILL while one job runs and nine wait in the local queue."""
    job_ids = chaos_db.add_jobs([(Sleep(seconds=0.5, tag=str(n)), None) for n in range(20)])
    first = workers.start("queue", options=["--local-queue-size", "10"])
    with chaos_db.connect() as db:
        (running,) = wait_for(lambda: list(ledger.starts(db)), "the first job to start")
    first.kill()

    held = locked_ids(chaos_db, first.pool_id)
    assert running in held
    prefetched = held - {running}
    assert len(prefetched) == 9  # a full local queue: ten fetched, one started

    if recovery == "force_unlock_workers":
        asyncio.run(force_unlock(chaos_db.url, [first.pool_id]))
        second = workers.start("queue", options=["--local-queue-size", "10"])
        wait_for(lambda: all_finished(chaos_db, job_ids), "every job to finish", within=40)
        second.signal(signal.SIGTERM)
        assert second.wait() == 0
    else:
        with chaos_db.connect() as db:
            db.execute(
                "update graphile_worker._private_jobs"
                " set locked_at = locked_at - interval '4 hours 1 second' where locked_by = %s",
                (first.pool_id,),
            )
        monkeypatch.setenv(LEDGER_URL_ENV, chaos_db.url)
        asyncio.run(asyncio.wait_for(sweep_and_run(chaos_db, job_ids), 40))

    with chaos_db.connect() as db:
        started, finished = ledger.starts(db), ledger.finishes(db)
        assert ledger.no_loss(db, job_ids) == []
        assert all(finished[i] == 1 for i in job_ids)
        assert ledger.effects(db) == 20
        # The interrupted job ran again (at most twice); the others ran exactly once.
        assert ledger.dupes(db, running) == 1
        assert ledger.attempts_started(db, running) == [1, 2]
        assert all(started[i] == 1 for i in job_ids if i != running)
        # A job fetched into the dead worker's queue keeps the attempt that fetch took.
        assert {i: ledger.attempts_started(db, i) for i in prefetched} == {
            i: [2] for i in prefetched
        }
        rest = set(job_ids) - held
        assert {i: ledger.attempts_started(db, i) for i in rest} == {i: [1] for i in rest}
        assert ledger.locked_by_dead(db, [first.pool_id]) == 0
        assert db.execute("select count(*) from graphile_worker._private_jobs").fetchone() == (0,)


def cli_force_unlock(url: str, pool_id: str) -> None:
    """What a supervisor runs before it restarts a worker that crashed."""
    subprocess.run(
        [sys.executable, "-m", "sqlalchemy_graphile", "-c", url, "force-unlock", pool_id],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=30,
    )


def test_poison_pill_is_bounded_by_max_attempts(chaos_db: ChaosDatabase, workers: Workers) -> None:
    """Reliability test 9: a job that kills its worker process every time."""
    (poison,) = chaos_db.add_jobs([(Crash(), JobSpec(max_attempts=3))])
    normal = chaos_db.add_jobs([(Sleep(seconds=0.05, tag=str(n)), None) for n in range(50)])

    def settled() -> bool:
        with chaos_db.connect() as db:
            row = db.execute(
                "select attempts >= max_attempts and locked_by is null"
                " from graphile_worker._private_jobs where id = %s",
                (poison,),
            ).fetchone()
        return row == (True,) and all_finished(chaos_db, normal)

    crashes = 0
    while True:  # the supervisor
        worker = workers.start("poison", concurrency=2)

        def crashed_or_done(worker: WorkerProcess = worker) -> bool:
            return not worker.alive or settled()

        wait_for(crashed_or_done, "a crash or the end of the work")
        if worker.alive:
            break
        assert worker.returncode == CRASH_STATUS, worker.log()
        crashes += 1
        assert crashes <= 3, "the poison job keeps crashing workers"
        cli_force_unlock(chaos_db.url, worker.pool_id)
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0

    assert crashes == 3
    with chaos_db.connect() as db:
        attempts, max_attempts, locked_by = db.execute(
            "select attempts, max_attempts, locked_by from graphile_worker._private_jobs"
            " where id = %s",
            (poison,),
        ).fetchone()  # type: ignore[misc]
        assert (attempts, max_attempts, locked_by) == (3, 3, None)
        assert ledger.attempts_started(db, poison) == [1, 2, 3]
        assert ledger.no_loss(db, normal) == []
        assert ledger.effects(db) == 50
        started = ledger.starts(db)
        # A normal job runs again only when a crash interrupted it.
        assert sum(started[i] - 1 for i in normal) <= crashes
        assert ledger.locked_by_dead(db, workers.dead_pool_ids()) == 0
