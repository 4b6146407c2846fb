"""Stopping a worker process with signals (reliability tests 16 and 17)."""

from __future__ import annotations

import math
import signal

import psycopg
import pytest

from sqlalchemy_graphile import Task

from . import _ledger as ledger
from ._tasks import Sleep, StubbornAsync, StubbornSync
from ._workers import WorkerProcess, Workers, wait_for
from .conftest import ChaosDatabase

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]

LOCAL_QUEUE = ["--local-queue-size", "8"]


def jobs_started_by(
    db: psycopg.Connection, worker: WorkerProcess, event: str = "start"
) -> set[int]:
    rows = db.execute(
        "select job_id from chaos.ledger where event = %s and pid = %s", (event, worker.pid)
    ).fetchall()
    return {job_id for (job_id,) in rows}


def statements_in_flight(db: psycopg.Connection, worker: WorkerProcess) -> int:
    (count,) = db.execute(
        "select count(*) from pg_stat_activity where application_name = %s and state <> 'idle'",
        (worker.name,),
    ).fetchone()  # type: ignore[misc]
    return int(count)


def test_graceful_shutdown_returns_prefetched_jobs_at_once(
    chaos_db: ChaosDatabase, workers: Workers
) -> None:
    """Reliability test 16: 100 jobs of 200 ms, concurrency 4, local queue 8, SIGTERM
    halfway."""
    job_ids = chaos_db.add_jobs([(Sleep(seconds=0.2, tag=str(n)), None) for n in range(100)])
    first = workers.start("graceful", concurrency=4, options=LOCAL_QUEUE)
    with chaos_db.connect() as db:
        wait_for(lambda: sum(ledger.finishes(db).values()) >= 50, "half of the jobs to finish")
        # Freeze the worker to see exactly what it holds when the signal arrives.
        first.signal(signal.SIGSTOP)
        wait_for(lambda: statements_in_flight(db, first) == 0, "its statements to end")
        started_before = set(ledger.starts(db))
        held = {
            job_id
            for (job_id,) in db.execute(
                "select id from graphile_worker._private_jobs where locked_by = %s",
                (first.pool_id,),
            )
        }
        first.signal(signal.SIGTERM)
        first.signal(signal.SIGCONT)
        assert first.wait() == 0

        started = jobs_started_by(db, first)
        # No fetch after the signal: every job it started afterwards was already held.
        assert started - started_before <= held
        # Running jobs finished; the jobs waiting in the local queue went back at once,
        # their attempt refunded.
        assert jobs_started_by(db, first, "finish") == started
        returned = held - started
        assert returned, "the local queue held no job when the signal arrived"
        rows = db.execute(
            "select id, attempts, locked_by from graphile_worker._private_jobs where id = any(%s)",
            (list(returned),),
        ).fetchall()
        assert sorted(rows) == [(job_id, 0, None) for job_id in sorted(returned)]
        assert ledger.locked_by_dead(db, [first.pool_id]) == 0

        # The next worker takes the rest at once: no lock had to time out.
        second = workers.start("graceful", concurrency=4, options=LOCAL_QUEUE)
        wait_for(lambda: ledger.no_loss(db, job_ids) == [], "the rest of the jobs", within=30)
        second.signal(signal.SIGTERM)
        assert second.wait() == 0
        started_count, finished_count = ledger.starts(db), ledger.finishes(db)
        assert all(started_count[i] == finished_count[i] == 1 for i in job_ids)
        assert ledger.effects(db) == 100


@pytest.mark.parametrize("task", [StubbornAsync, StubbornSync], ids=["async", "thread"])
def test_a_second_signal_stops_a_job_that_ignores_cancellation(
    chaos_db: ChaosDatabase, workers: Workers, task: type[Task]
) -> None:
    """Reliability test 17: the job neither honours ``abort_signal`` nor cancellation."""
    (job_id,) = chaos_db.add_jobs([(task(), None)])
    worker = workers.start("stubborn")
    with chaos_db.connect() as db:
        wait_for(lambda: ledger.starts(db)[job_id], "the job to start")
        worker.signal(signal.SIGTERM)
        # Two signals sent back to back may reach the process as one: wait for the first.
        worker.wait_for_log("received SIGTERM")
        worker.signal(signal.SIGTERM)
        # Slots get 5 s to stop after a forceful shutdown, then abandoned task code gets 1 s.
        status = worker.wait(within=15)

        attempts, last_error, locked_by, delay = db.execute(
            "select attempts, last_error, locked_by,"
            "       extract(epoch from run_at - (select at from chaos.ledger as l"
            "                                    where l.job_id = jobs.id and event = 'start'))"
            " from graphile_worker._private_jobs as jobs where id = %s",
            (job_id,),
        ).fetchone()  # type: ignore[misc]
        assert last_error == "the worker was stopped forcefully by SIGTERM while the job ran"
        assert (attempts, locked_by) == (1, None)
        assert delay >= math.exp(1)  # failed with the usual backoff
        assert ledger.locked_by_dead(db, [worker.pool_id]) == 0
        assert ledger.finishes(db)[job_id] == 0
    # The task still ran: the process left it behind, with status 1.
    assert status == 1
    assert "task code abandoned by the forceful shutdown still runs" in worker.log()
