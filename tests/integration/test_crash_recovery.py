"""Crash recovery with short thresholds: a worker killed with SIGKILL mid-job has its job
(and its named queue) recovered by another worker's sweep and run once more; concurrent
sweepers recover once; the resilient flag, unregistered owners and dry runs behave as
documented."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest

from sqlalchemy_graphile import (
    ConfigurationError,
    JobRecoveredEvent,
    JobRecovery,
    RecoveryEvent,
    Task,
    WorkerContext,
    WorkerPlugin,
    WorkerUtils,
)
from tests._processes import reaped, wait_until
from tests.integration._crash_worker import CREATE_STARTS, HEARTBEAT_INTERVAL, SWEEP_THRESHOLD
from tests.integration._worker_support import (
    Recorder,
    add,
    eventually,
    logged,
    make_worker,
    recorder,
    rows,
)

S = "graphile_worker"
ROOT = Path(__file__).resolve().parents[2]
SWEEP_INTERVAL = 0.25
FAST: dict[str, Any] = {
    "heartbeat_interval": HEARTBEAT_INTERVAL,
    "sweep_threshold": SWEEP_THRESHOLD,
    "sweep_interval": SWEEP_INTERVAL,
}
DEAD = "sgpool-00000000000000dead"


class Hold(Task):
    """The rescuing worker's ``hold``: records the run and returns at once."""

    IDENTIFIER: ClassVar[str] = "hold"
    name: str = ""

    async def run(self, ctx: WorkerContext) -> None:
        rec = recorder(ctx)
        rec.running += 1
        rec.max_running = max(rec.max_running, rec.running)
        rec.calls.append(("hold", (self.name, ctx.job.attempts, ctx.job.last_error)))
        rec.started.set()
        await asyncio.sleep(0.05)  # long enough for a second job of the queue to overlap
        rec.running -= 1


class RecoveryLog(WorkerPlugin):
    """A plugin that keeps every ``on_job_recovery`` call."""

    def __init__(self) -> None:
        self.recoveries: list[JobRecovery] = []

    async def on_job_recovery(self, recovery: JobRecovery) -> None:
        self.recoveries.append(recovery)


@pytest.fixture
def victim(
    db_url: str, db: psycopg.Connection, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker process (``_crash_worker``) that blocks in every job it runs."""
    db.execute(CREATE_STARTS)
    log_path = tmp_path / "victim.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration._crash_worker", db_url],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        with reaped(process):
            process.log_path = log_path  # type: ignore[attr-defined]
            yield process


def started_jobs(db: psycopg.Connection) -> list[tuple[Any, ...]]:
    return rows(db, "select job_id, attempt, pid from crash_starts order by at")


def kill_when_started(
    victim: subprocess.Popen[bytes], db: psycopg.Connection, count: int = 1
) -> str:
    """Wait until the victim runs ``count`` job(s), SIGKILL it, and return its pool id."""
    log_path: Path = victim.log_path  # type: ignore[attr-defined]
    wait_until(lambda: len(started_jobs(db)) >= count, victim, log_path)
    ((owner,),) = rows(db, f"select id from {S}._private_workers")
    victim.kill()
    victim.wait()
    return str(owner)


async def test_a_job_of_a_killed_worker_runs_once_more_on_another_worker(
    db_url: str, db: psycopg.Connection, victim: subprocess.Popen[bytes]
) -> None:
    job_id = add(db, "hold", '{"name": "a"}')
    dead = kill_when_started(victim, db)
    killed_at = time.monotonic()
    assert rows(db, f"select locked_by from {S}._private_jobs") == [(dead,)]

    events, log = logged()
    rec = Recorder()
    hooks = RecoveryLog()
    worker = make_worker(db_url, Hold, rec=rec, events=events, plugins=[hooks], **FAST)
    async with worker:
        rescuer = worker.pool_id
        recovered = await log.wait_for("worker:recovered")
        await rec.started.wait()
        latency = time.monotonic() - killed_at
    assert isinstance(recovered, RecoveryEvent)
    assert recovered.dead_workers == (dead,)
    assert (recovered.jobs_recovered, recovered.jobs_per_worker) == (1, {dead: 1})
    (job_event,) = [e for e in log.events if e.name == "job:recovered"]
    assert isinstance(job_event, JobRecoveredEvent)
    assert (job_event.job.id, job_event.job.locked_by, job_event.job.attempts) == (job_id, dead, 1)
    # Exactly one more run, with the interrupted attempt refunded.
    assert rec.seen("hold") == [("a", 1, "Job recovered after worker interruption")]
    assert started_jobs(db) == [(job_id, 1, victim.pid)]
    assert rows(db, f"select count(*) from {S}._private_jobs") == [(0,)]
    assert rows(db, f"select id from {S}._private_workers") == []
    (recovery,) = hooks.recoveries
    assert (recovery.worker_id, recovery.previous_worker_id) == (rescuer, dead)
    assert (recovery.job.id, recovery.job.task_identifier) == (job_id, "hold")
    # The hook reads the job after the sweep committed: as recovery left it (attempt refunded,
    # unlocked), or already taken again by the rescuer, which the sweep's NOTIFY woke.
    assert (recovery.job.attempts, recovery.job.locked_by) in {(0, None), (1, rescuer)}
    assert recovery.job.last_error == "Job recovered after worker interruption"
    # Within heartbeat + threshold + sweep interval, with room for a busy machine.
    assert latency < HEARTBEAT_INTERVAL + SWEEP_THRESHOLD + SWEEP_INTERVAL + 5


async def test_a_named_queue_held_by_a_killed_worker_resumes(
    db_url: str, db: psycopg.Connection, victim: subprocess.Popen[bytes]
) -> None:
    first = add(db, "hold", '{"name": "a"}', queue_name="serial")
    kill_when_started(victim, db)
    add(db, "hold", '{"name": "b"}', queue_name="serial")
    assert rows(db, f"select locked_by is not null from {S}._private_job_queues") == [(True,)]

    rec = Recorder()
    worker = make_worker(db_url, Hold, rec=rec, concurrency=2, **FAST)
    async with worker:
        await eventually(lambda: len(rec.seen("hold")) == 2, within=30)
    # Both ran once, one at a time. The recovered job's run_at became the recovery time, so
    # "b", due earlier, may run first.
    runs = sorted(rec.seen("hold"))
    assert runs == [("a", 1, "Job recovered after worker interruption"), ("b", 1, None)]
    assert rec.max_running == 1
    assert started_jobs(db)[0][0] == first
    assert rows(db, f"select locked_by from {S}._private_job_queues") == [(None,)]


def register_dead_worker(db: psycopg.Connection, age: str = "1 hour") -> None:
    db.execute(f"select {S}.worker_heartbeat(%s)", (DEAD,))
    db.execute(f"update {S}._private_workers set last_heartbeat_at = now() - %s::interval", (age,))


def lock_jobs(db: psycopg.Connection, owner: str, *job_ids: int) -> None:
    db.execute(
        f"update {S}._private_jobs set locked_by = %s, locked_at = now() - interval '1 hour',"
        " attempts = attempts + 1 where id = any(%s)",
        (owner, list(job_ids)),
    )
    db.execute(
        f"update {S}._private_job_queues q set locked_by = %s,"
        " locked_at = now() - interval '1 hour'"
        f" from {S}._private_jobs j where j.job_queue_id = q.id and j.id = any(%s)",
        (owner, list(job_ids)),
    )


async def test_the_sweep_runs_when_a_worker_goes_stale_not_a_whole_interval_later(
    db_url: str, db: psycopg.Connection
) -> None:
    """With an interval far longer than the threshold, the sweep still runs just after the
    other worker's heartbeat goes stale: recovery waits the threshold, not the interval."""
    job_id = add(db, "hold", '{"name": "late"}')
    register_dead_worker(db, age="1 second")  # stale 2 s after its last heartbeat
    lock_jobs(db, DEAD, job_id)
    events, log = logged()
    rec = Recorder()
    worker = make_worker(
        db_url,
        Hold,
        rec=rec,
        events=events,
        heartbeat_interval=HEARTBEAT_INTERVAL,
        sweep_threshold=2.0,
        sweep_interval=3600.0,
    )
    async with worker:
        recovered = await log.wait_for("worker:recovered", within=60)
        await rec.started.wait()
    assert isinstance(recovered, RecoveryEvent)
    assert recovered.dead_workers == (DEAD,)
    assert rec.seen("hold") == [("late", 1, "Job recovered after worker interruption")]


async def test_concurrent_sweepers_recover_once(db_url: str, db: psycopg.Connection) -> None:
    job_ids = [add(db, "hold", queue_name="q"), add(db, "hold"), add(db, "hold")]
    register_dead_worker(db)
    lock_jobs(db, DEAD, *job_ids)
    async with WorkerUtils(db_url) as utils:
        results = await asyncio.gather(
            *(utils.sweep_stale_workers(sweep_threshold=1.0) for _ in range(4))
        )
    assert sum(len(r.jobs) for r in results) == 3
    assert [r.dead_workers for r in results if r.jobs] == [(DEAD,)]
    assert (
        rows(db, f"select attempts, locked_by from {S}._private_jobs order by id")
        == [(0, None)] * 3
    )
    assert rows(db, f"select locked_by from {S}._private_job_queues") == [(None,)]
    assert rows(db, f"select count(*) from {S}._private_workers") == [(0,)]


async def test_dry_run_changes_nothing(db_url: str, db: psycopg.Connection) -> None:
    job_id = add(db, "hold")
    register_dead_worker(db)
    lock_jobs(db, DEAD, job_id)
    before = rows(db, f"select * from {S}._private_jobs")
    async with WorkerUtils(db_url) as utils:
        result = await utils.sweep_stale_workers(sweep_threshold=60, dry_run=True)
    assert (result.swept, result.dry_run, result.dead_workers) == (True, True, (DEAD,))
    assert [job.id for job in result.jobs] == [job_id]
    assert rows(db, f"select * from {S}._private_jobs") == before
    assert rows(db, f"select id from {S}._private_workers") == [(DEAD,)]


async def test_a_resilient_job_gives_its_worker_more_time(
    db_url: str, db: psycopg.Connection
) -> None:
    job_id = add(db, "hold", flags=["infrastructure_resilient"])
    register_dead_worker(db, "2 minutes")
    lock_jobs(db, DEAD, job_id)
    async with WorkerUtils(db_url) as utils:
        spared = await utils.sweep_stale_workers(sweep_threshold=60)  # 2 min < 3 x 60 s
        assert spared.dead_workers == ()
        taken = await utils.sweep_stale_workers(sweep_threshold=30)  # 2 min > 3 x 30 s
        assert [job.id for job in taken.jobs] == [job_id]


async def test_unregistered_owners_are_left_to_the_four_hour_sweep_unless_asked(
    db_url: str, db: psycopg.Connection
) -> None:
    """A Node pool never registers; a pruned row looks the same (reliability test 7b)."""
    job_id = add(db, "hold")
    lock_jobs(db, "pool-0123456789abcdef01", job_id)
    async with WorkerUtils(db_url) as utils:
        default = await utils.sweep_stale_workers(sweep_threshold=1)
        assert (default.dead_workers, default.orphans, default.jobs) == ((), (), ())
        opted_in = await utils.sweep_stale_workers(
            sweep_threshold=1, recover_unregistered_locks=True
        )
    assert opted_in.orphans == ("pool-0123456789abcdef01",)
    assert [job.id for job in opted_in.jobs] == [job_id]
    assert rows(db, f"select locked_by from {S}._private_jobs") == [(None,)]


async def test_recovery_delay_pushes_run_at(db_url: str, db: psycopg.Connection) -> None:
    job_id = add(db, "hold")
    register_dead_worker(db)
    lock_jobs(db, DEAD, job_id)
    before = datetime.now(UTC)
    async with WorkerUtils(db_url) as utils:
        await utils.sweep_stale_workers(sweep_threshold=1, recovery_delay=120)
    ((run_at,),) = rows(db, f"select run_at from {S}._private_jobs")
    assert run_at >= before + timedelta(seconds=119)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("sweep_threshold", 0),
        ("sweep_threshold", float("nan")),
        ("recovery_delay", -1),
        ("resilient_threshold_multiplier", 0.5),
        ("resilient_flags", "infrastructure_resilient"),
    ],
)
async def test_bad_sweep_options_are_refused_before_any_sql(option: str, value: Any) -> None:
    utils = WorkerUtils("postgresql://postgres@127.0.0.1:1/unreachable")
    with pytest.raises(ConfigurationError, match=option):
        await utils.sweep_stale_workers(**{option: value})
    await utils.close()
