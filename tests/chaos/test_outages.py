"""PostgreSQL restarts, outages and a lost LISTEN connection under a running worker
(reliability tests 11, 12 and 13)."""

from __future__ import annotations

import time
from datetime import datetime

import psutil
import psycopg
import pytest

from . import _ledger as ledger
from ._tasks import Sleep
from ._workers import WorkerProcess, Workers, wait_for
from .conftest import ChaosDatabase

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]

#: Long enough that only a notification, or the fetch that follows a reconnection, can
#: explain a pickup within the tests' deadlines.
LONG_POLL = 30.0


def listen_backend(db: psycopg.Connection, worker: WorkerProcess) -> tuple[int, datetime] | None:
    """``(pid, backend_start)`` of the worker's LISTEN connection, if it is connected."""
    return db.execute(
        "select pid, backend_start from pg_stat_activity where application_name = %s",
        (f"{worker.name}-listen",),
    ).fetchone()


def allow_connections(chaos_db: ChaosDatabase, allow: bool) -> None:
    """Let new connections into the test database, or refuse them (superusers too)."""
    with psycopg.connect(chaos_db.cluster.conninfo("postgres"), autocommit=True) as admin:
        admin.execute(f'alter database "{chaos_db.name}" allow_connections {allow}')


def test_worker_survives_a_restart_while_idle(chaos_db: ChaosDatabase, workers: Workers) -> None:
    """Reliability test 11."""
    worker = workers.start("idle", poll_interval=LONG_POLL)
    with chaos_db.connect() as db:
        before, _ = wait_for(lambda: listen_backend(db, worker), "the worker to LISTEN")

    chaos_db.cluster.restart("fast")

    with chaos_db.connect() as db:
        after, _ = wait_for(lambda: listen_backend(db, worker), "LISTEN to come back", within=15)
        assert after != before
        worker.wait_for_log("LISTEN connection re-established")
        assert worker.alive
        (job_id,) = chaos_db.add_jobs([(Sleep(tag="after the restart"), None)])
        wait_for(lambda: ledger.finishes(db)[job_id], "the new job to run", within=10)
    assert worker.alive


def test_listen_connection_terminated(chaos_db: ChaosDatabase, workers: Workers) -> None:
    """Reliability test 13: jobs added while the worker has no LISTEN connection."""
    worker = workers.start("listen", poll_interval=LONG_POLL)
    with chaos_db.connect() as db:
        old_pid, _ = wait_for(lambda: listen_backend(db, worker), "the worker to LISTEN")
        # Hold the worker off the database while the gap lasts: it cannot reconnect.
        allow_connections(chaos_db, False)
        try:
            (terminated,) = db.execute(
                "select pg_terminate_backend(%s, 5000)", (old_pid,)
            ).fetchone()  # type: ignore[misc]
            assert terminated
            job_ids = [
                job_id
                for (job_id,) in db.execute(
                    "select (graphile_worker.add_job('chaos_sleep', json_build_object('tag', n)))"
                    ".id from generate_series(1, 3) as n"
                ).fetchall()
            ]
            (committed_at,) = db.execute("select clock_timestamp()").fetchone()  # type: ignore[misc]
        finally:
            allow_connections(chaos_db, True)

        new_pid, listening_since = wait_for(
            lambda: listen_backend(db, worker), "LISTEN to come back", within=10
        )
        assert new_pid != old_pid
        assert committed_at < listening_since  # nobody was listening when they committed
        wait_for(lambda: ledger.no_loss(db, job_ids) == [], "the gap's jobs to run", within=10)
    worker.wait_for_log("LISTEN connection re-established")
    assert worker.alive


def test_jobs_finishing_while_postgres_is_down(chaos_db: ChaosDatabase, workers: Workers) -> None:
    """Reliability test 12 (the outage shrunk to 15 s): five jobs of 5 s that do not touch
    the database while they run, four at a time, with batched completion."""
    outage = 15.0
    job_ids = chaos_db.add_jobs(
        [(Sleep(seconds=5, tag=str(n), finish_late=True), None) for n in range(5)]
    )
    worker = workers.start("outage", concurrency=4, options=["--complete-job-batch-delay", "0.05"])
    with chaos_db.connect() as db:
        wait_for(lambda: len(ledger.starts(db)) == 4, "four jobs to start")
    process = psutil.Process(worker.pid)

    chaos_db.cluster.stop("immediate")
    down_at = time.monotonic()
    # Four jobs end during the outage, and their batched completion cannot be written; the
    # fifth waits for the database to come back.
    worker.wait_for_log("cannot record the completion of", within=outage)
    # From here on the worker only waits: its CPU is measured over the rest of the outage,
    # after the one-off work of the first failures (error paths imported and compiled).
    cpu_before, measured_from = sum(process.cpu_times()[:2]), time.monotonic()
    time.sleep(max(0.0, down_at + outage - time.monotonic()))  # the rest of the outage
    cpu_used = sum(process.cpu_times()[:2]) - cpu_before
    measured_for = time.monotonic() - measured_from
    chaos_db.cluster.start()

    assert worker.alive
    assert measured_for > 5.0, "the jobs ended too late in the outage to measure the wait"
    # No hot loop while the database was away: well below 20 % of one core.
    assert cpu_used / measured_for < 0.2, f"{cpu_used:.2f} s of CPU in {measured_for:.1f} s"
    with chaos_db.connect() as db:

        def completed() -> bool:
            (left,) = db.execute("select count(*) from graphile_worker._private_jobs").fetchone()  # type: ignore[misc]
            return left == 0 and ledger.no_loss(db, job_ids) == []

        wait_for(completed, "the completions to be written", within=30)
        started, finished = ledger.starts(db), ledger.finishes(db)
        # Each ran once: the worker kept its locks through the outage, so nothing re-ran.
        assert all(started[i] == finished[i] == 1 for i in job_ids)
        assert ledger.effects(db) == 5
    worker.wait_for_log("recorded the completion of")
    assert worker.alive
