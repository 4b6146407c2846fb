"""A worker that lost a job's lock while running it (a sweep gave the job back and another
worker took it) records nothing for it: no completion, no failure, no queue unlock; it
warns naming the job and emits ``job:fenced`` instead of the job's outcome events. Unbatched
and batched releases, unqueued jobs and named queues."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import psycopg
import pytest

from sqlalchemy_graphile import JobEvent, Task, WorkerContext
from tests.integration._worker_support import (
    Recorder,
    add,
    jobs,
    logged,
    make_worker,
    recorder,
    rows,
)

THIEF = "sgpool-0000000000000thief"
OUTCOME_EVENTS = {"job:success", "job:error", "job:failed", "job:complete"}

BATCHED = {"complete_job_batch_delay": 0.05, "fail_job_batch_delay": 0.05}


class Gated(Task):
    """Runs until the recorder's gate opens, then fails if the recorder says so."""

    IDENTIFIER: ClassVar[str] = "gated"
    n: int = 0

    async def run(self, ctx: WorkerContext) -> None:
        rec = recorder(ctx)
        rec.running += 1
        rec.started.set()
        await rec.gate.wait()
        if rec.fail_with is not None:
            raise rec.fail_with


def steal(db: psycopg.Connection, job_id: int) -> None:
    """What a sweep and a second worker do: the job (and its queue) change owner."""
    db.execute(
        "update graphile_worker._private_jobs set locked_by = %s, locked_at = now() where id = %s",
        (THIEF, job_id),
    )
    db.execute(
        "update graphile_worker._private_job_queues q set locked_by = %s, locked_at = now()"
        " from graphile_worker._private_jobs j where j.job_queue_id = q.id and j.id = %s",
        (THIEF, job_id),
    )


def job_event_names(log: Any, job_id: int) -> list[str]:
    return [e.name for e in log.events if isinstance(e, JobEvent) and e.job.id == job_id]


@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
@pytest.mark.parametrize("queued", [False, True], ids=["unqueued", "named-queue"])
@pytest.mark.parametrize("fails", [False, True], ids=["succeeds", "fails"])
async def test_a_fenced_job_is_not_recorded_nor_reported(
    db_url: str,
    db: psycopg.Connection,
    caplog: pytest.LogCaptureFixture,
    batched: bool,
    queued: bool,
    fails: bool,
) -> None:
    queue = {"queue_name": "serial"} if queued else {}
    stolen = add(db, "gated", '{"n": 1}', **queue)
    kept = add(db, "gated", '{"n": 2}')
    rec = Recorder()
    if fails:
        rec.fail_with = RuntimeError("boom")
    events, log = logged()
    options: dict[str, Any] = BATCHED if batched else {}
    worker = make_worker(db_url, Gated, rec=rec, events=events, concurrency=2, **options)
    with caplog.at_level(logging.WARNING, logger="sqlalchemy_graphile.worker"):
        running = asyncio.create_task(worker.run_once())
        await asyncio.wait_for(_both_started(rec), 15)
        steal(db, stolen)
        rec.gate.set()
        await running

    assert job_event_names(log, stolen) == ["job:start", "job:fenced"]
    kept_events = job_event_names(log, kept)
    assert kept_events[0] == "job:start"
    assert kept_events[-1] == "job:complete"
    assert "job:fenced" not in kept_events
    fenced = [e for e in log.events if e.name == "job:fenced"]
    assert len(fenced) == 1
    assert isinstance(fenced[0], JobEvent)
    assert (fenced[0].error is not None) == fails
    warnings = [r.getMessage() for r in caplog.records if "fenced" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"job {stolen} (gated) is no longer locked by this worker")
    # The thief's job and queue lock are untouched.
    (row,) = [job for job in jobs(db) if job["id"] == stolen]
    assert (row["locked_by"], row["attempts"], row["last_error"]) == (THIEF, 1, None)
    if queued:
        assert rows(db, "select locked_by from graphile_worker._private_job_queues") == [(THIEF,)]


async def _both_started(rec: Recorder) -> None:
    while rec.running < 2:
        rec.started.clear()
        await rec.started.wait()
