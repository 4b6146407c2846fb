"""Workers that die or stall, and the heartbeat recovery sweep (reliability tests 4, 5, 7,
15, 21 and 23).

Workers run with the fast settings: a heartbeat every second, dead after 3 s without one, a
sweep every second. Times are read on the database clock; the ledger says what ran, how
often and when. A job that must still be running when its worker is killed or stopped waits
at a gate (``Sleep.gate``) that the test opens afterwards, so no test depends on how fast
the machine is.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import datetime, timedelta

import psycopg
import pytest

from sqlalchemy_graphile import JobSpec, WorkerUtils

from . import _ledger as ledger
from ._tasks import Sleep
from ._workers import WorkerProcess, Workers, wait_for
from .conftest import ChaosDatabase

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]

HEARTBEAT, THRESHOLD, SWEEP = 1.0, 3.0, 1.0
#: Register, refresh every second, count as dead after 3 s; no sweeping.
REGISTERED = [
    "--heartbeat-interval",
    str(HEARTBEAT),
    "--sweep-threshold",
    str(THRESHOLD),
    "--sweep-interval",
    "-1",
]
#: The same, and sweep every second.
SWEEPER = [*REGISTERED[:4], "--sweep-interval", str(SWEEP)]
RECOVERED = "Job recovered after worker interruption"


def db_now(db: psycopg.Connection) -> datetime:
    (now,) = db.execute("select now()").fetchone()  # type: ignore[misc]
    return now  # type: ignore[no-any-return]


def job(db: psycopg.Connection, job_id: int) -> dict[str, object] | None:
    cursor = db.execute("select * from graphile_worker._private_jobs where id = %s", (job_id,))
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([c.name for c in cursor.description or ()], row, strict=True))


def start_times(db: psycopg.Connection, job_id: int) -> list[datetime]:
    rows = db.execute(
        "select at from chaos.ledger where job_id = %s and event = 'start' order by id", (job_id,)
    ).fetchall()
    return [at for (at,) in rows]


def finish_time(db: psycopg.Connection, job_id: int) -> datetime:
    (finish,) = db.execute(
        "select min(at) from chaos.ledger where job_id = %s and event = 'finish'", (job_id,)
    ).fetchone()  # type: ignore[misc]
    return finish  # type: ignore[no-any-return]


def run_interval(db: psycopg.Connection, job_id: int) -> tuple[datetime, datetime]:
    """The first start and the first finish of a job that ran once."""
    return start_times(db, job_id)[0], finish_time(db, job_id)


def kill_when_started(
    chaos_db: ChaosDatabase, worker: WorkerProcess, count: int = 1
) -> tuple[str, datetime]:
    """Wait until ``count`` jobs started, SIGKILL the worker; its pool id and the kill time
    on the database clock."""
    with chaos_db.connect() as db:
        wait_for(lambda: sum(ledger.starts(db).values()) >= count, f"{count} job(s) to start")
        pool_id = worker.pool_id
        worker.kill()
        return pool_id, db_now(db)


def test_heartbeat_recovery_with_a_delay_and_a_serial_queue(
    chaos_db: ChaosDatabase, workers: Workers
) -> None:
    """Tests 5 and 21: SIGKILL mid-job; another worker's sweep gives the jobs back within
    heartbeat + threshold + sweep, with run_at pushed by the recovery delay, and the named
    queue the dead worker held resumes, its jobs one at a time."""
    # The jobs hold at the gate until the victim is dead: it dies holding both and the
    # serial queue's lock, however long the rescuer takes to start.
    plain, serial_a = chaos_db.add_jobs(
        [
            (Sleep(seconds=1, tag="plain", gate="killed"), None),
            (Sleep(seconds=1, tag="a", gate="killed"), JobSpec(queue_name="serial")),
        ]
    )
    (serial_b,) = chaos_db.add_jobs(
        [(Sleep(seconds=1, tag="b", gate="killed"), JobSpec(queue_name="serial"))]
    )
    victim = workers.start("victim", concurrency=2, options=REGISTERED)
    with chaos_db.connect() as db:
        wait_for(lambda: ledger.starts(db) == {plain: 1, serial_a: 1}, "the victim's two jobs")
    rescuer = workers.start("rescuer", concurrency=2, options=[*SWEEPER, "--recovery-delay", "1"])
    rescuer.wait_for_log("waiting for jobs")
    dead, killed_at = kill_when_started(chaos_db, victim, 2)
    with chaos_db.connect() as db:
        ledger.open_gate(db, "killed")
        wait_for(lambda: ledger.starts(db)[plain] == 2, "the dead worker's job to run again")
        recovered = job(db, plain)
        assert recovered is not None
        assert (recovered["attempts"], recovered["last_error"]) == (1, RECOVERED)
        released = recovered["updated_at"]
        assert isinstance(released, datetime)
        assert released - killed_at <= timedelta(seconds=HEARTBEAT + THRESHOLD + SWEEP + 1)
        run_at = recovered["run_at"]
        assert isinstance(run_at, datetime)
        assert run_at - released >= timedelta(seconds=1)  # the recovery delay
        assert start_times(db, plain)[1] >= run_at

        # The recovery delay may let B, due earlier, run before A's re-run: wait for both.
        wait_for(
            lambda: ledger.finishes(db)[serial_a] == ledger.finishes(db)[serial_b] == 1,
            "the serial queue to drain",
            20,
        )
        first_a, second_a = start_times(db, serial_a)
        assert first_a < killed_at
        # A's re-run (from its second start to its only finish) and B never overlap.
        runs = sorted([(second_a, finish_time(db, serial_a)), run_interval(db, serial_b)])
        assert runs[0][1] <= runs[1][0]
        assert ledger.locked_by_dead(db, [dead]) == 0
        assert db.execute("select id from graphile_worker._private_workers").fetchall() == [
            (rescuer.pool_id,)
        ]
    rescuer.wait_for_log("recovered 2 job(s) and 1 queue lock(s) from 1 dead worker(s)")


def test_an_unregistered_dead_worker_waits_for_the_lock_timeout(
    chaos_db: ChaosDatabase, workers: Workers
) -> None:
    """Test 4: a worker that does not register is not recovered by the heartbeat sweep; the
    four-hour stale-lock sweep (judged by the database's now()) frees its job, which runs
    again with the lost attempt counted. Other jobs are unaffected."""
    (held,) = chaos_db.add_jobs([(Sleep(tag="held", gate="never"), None)])
    victim = workers.start("unregistered", options=["--heartbeat-interval", "-1"])
    dead, _killed_at = kill_when_started(chaos_db, victim)
    others = chaos_db.add_jobs([(Sleep(seconds=0.1, tag=str(n)), None) for n in range(3)])
    workers.start(
        "rescuer",
        options=[*SWEEPER, "--min-reset-locked-interval", "1", "--max-reset-locked-interval", "1"],
    )
    with chaos_db.connect() as db:
        wait_for(lambda: all(ledger.finishes(db)[i] == 1 for i in others), "the other jobs")
        # Two sweep intervals after the other jobs ran, the job is still the dead worker's.
        two_sweeps = timedelta(seconds=2 * SWEEP)
        wait_for(lambda: db_now(db) > start_times(db, others[-1])[0] + two_sweeps, "two sweeps")
        assert (job(db, held) or {})["locked_by"] == dead
        db.execute(
            "update graphile_worker._private_jobs"
            " set locked_at = locked_at - interval '4 hours 1 second' where id = %s",
            (held,),
        )
        wait_for(lambda: ledger.starts(db)[held] == 2, "the stale-lock sweep to free the job")
        assert ledger.attempts_started(db, held) == [1, 2]


def test_recovery_edge_cases(chaos_db: ChaosDatabase, workers: Workers) -> None:
    """Test 7: (a) two sweepers at the same instant recover once; (b) a dead worker whose
    registry row was deleted is left to the lock timeout; (c) a process restarted with the
    same name gets a new id and does not adopt the dead one's locks."""
    first, second = chaos_db.add_jobs(
        [(Sleep(tag="a", gate="never"), None), (Sleep(tag="b", gate="never"), None)]
    )
    victim = workers.start("edge", concurrency=2, options=REGISTERED)
    dead, _killed_at = kill_when_started(chaos_db, victim, 2)
    with chaos_db.connect() as db:
        db.execute(
            "update graphile_worker._private_workers"
            " set last_heartbeat_at = now() - interval '1 minute'"
        )

        # (a) Two sweepers at once.
        async def sweep_twice() -> list[int]:
            async with WorkerUtils(chaos_db.url) as one, WorkerUtils(chaos_db.url) as two:
                results = await asyncio.gather(
                    one.sweep_stale_workers(sweep_threshold=THRESHOLD),
                    two.sweep_stale_workers(sweep_threshold=THRESHOLD),
                )
            return [len(result.jobs) for result in results]

        assert sorted(asyncio.run(sweep_twice())) == [0, 2]
        for job_id in (first, second):
            row = job(db, job_id)
            assert row is not None
            assert (row["attempts"], row["locked_by"], row["last_error"]) == (0, None, RECOVERED)

        # (b) A pruned heartbeat: the job stays with the dead id until the lock timeout.
        (third,) = chaos_db.add_jobs([(Sleep(tag="c", gate="never"), JobSpec(priority=-1))])
        pruned = workers.start("pruned", options=REGISTERED)
        gone, _ = kill_when_started(chaos_db, pruned, 3)
        db.execute("delete from graphile_worker._private_workers where id = %s", (gone,))
        db.execute(
            "update graphile_worker._private_jobs set locked_at = now() - interval '1 minute'"
            " where id = %s",
            (third,),
        )
        result = asyncio.run(_sweep(chaos_db.url))
        assert (result, (job(db, third) or {})["locked_by"]) == (0, gone)

        # (c) The same name again, at once: a new id; the old locks are not adopted.
        again = workers.restart(victim)
        assert again.pool_id not in (dead, gone)
        assert (job(db, third) or {})["locked_by"] == gone


async def _sweep(url: str) -> int:
    async with WorkerUtils(url) as utils:
        return len((await utils.sweep_stale_workers(sweep_threshold=THRESHOLD)).jobs)


def test_a_lost_completion_runs_again_once(chaos_db: ChaosDatabase, workers: Workers) -> None:
    """Test 15: the task finished, but its worker died before the batched completion was
    written: the job is recovered and runs once more; its effect is recorded once."""
    (job_id,) = chaos_db.add_jobs([(Sleep(seconds=0.1), None)])
    victim = workers.start("lost", options=[*REGISTERED, "--complete-job-batch-delay", "30"])
    with chaos_db.connect() as db:
        wait_for(lambda: ledger.finishes(db)[job_id] == 1, "the task to finish")
        victim.kill()
        assert (job(db, job_id) or {})["locked_by"] == victim.pool_id  # not completed
        workers.start("rescuer", options=SWEEPER)
        wait_for(lambda: job(db, job_id) is None, "the job to run again and complete")
        assert ledger.starts(db)[job_id] == 2
        assert ledger.effects(db) == 1


def test_a_job_longer_than_the_threshold(chaos_db: ChaosDatabase, workers: Workers) -> None:
    """Test 23: (a) a live worker that heartbeats keeps a job longer than the threshold: it
    runs once. (b) A worker stalled by SIGSTOP loses its job: another worker runs it, and
    when the stalled one wakes up its completion is fenced."""
    # Both jobs hold at the gate until the stalled worker's job was taken over: the long
    # job has then run longer than the threshold, and the stalled one was still running.
    (long_job,) = chaos_db.add_jobs([(Sleep(tag="long", gate="taken"), None)])
    workers.start("live", options=REGISTERED)
    with chaos_db.connect() as db:
        wait_for(lambda: ledger.starts(db)[long_job] == 1, "the long job to start")
        (stalled_job,) = chaos_db.add_jobs([(Sleep(tag="stalled", gate="taken"), None)])
        stalled = workers.start("stalled", options=REGISTERED)
        wait_for(lambda: ledger.starts(db)[stalled_job] == 1, "the other job to start")
        stalled.signal(signal.SIGSTOP)
        workers.start("rescuer", options=SWEEPER)
        wait_for(lambda: ledger.starts(db)[stalled_job] == 2, "another worker to take the job", 20)
        ledger.open_gate(db, "taken")
        stalled.signal(signal.SIGCONT)
        stalled.wait_for_log(f"job {stalled_job} (chaos_sleep) is no longer locked by this worker")
        wait_for(lambda: ledger.finishes(db)[long_job] == 1, "the long job to finish")
        wait_for(lambda: job(db, stalled_job) is None, "the taken job to complete")
        long_start, long_finish = run_interval(db, long_job)
        assert long_finish - long_start > timedelta(seconds=THRESHOLD)
        assert ledger.starts(db)[long_job] == 1  # never recovered from its live worker
        assert ledger.finishes(db)[stalled_job] == 2  # both runs ended; one was recorded
