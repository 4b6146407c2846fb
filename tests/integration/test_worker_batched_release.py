"""Batched completion and failure (``complete_job_batch_delay`` / ``fail_job_batch_delay``):
outcomes written in batches, flushed on shutdown, and a batch that cannot be written."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import psycopg
import pytest

from sqlalchemy_graphile import PoolErrorEvent, WorkerUtils

from ._worker_support import (
    Gated,
    Item,
    Job3,
    Recorder,
    add,
    eventually,
    jobs,
    locks,
    logged,
    make_worker,
    rows,
)

pytestmark = pytest.mark.schema_flavours("ours", "node")


async def test_ten_jobs_complete_through_the_batcher(db_url: str, db: psycopg.Connection) -> None:
    for n in range(10):
        add(db, "job3", f'{{"a": {n}}}', queue_name="q" if n % 3 == 0 else None)
    rec = Recorder()
    worker = make_worker(db_url, Job3, rec=rec, concurrency=4, complete_job_batch_delay=0.01)
    await worker.run_once()
    assert sorted(p["a"] for p in rec.seen("job3")) == list(range(10))
    assert jobs(db) == []
    assert locks(db) == 0


async def test_shutdown_flushes_pending_completions(db_url: str, db: psycopg.Connection) -> None:
    for n in range(6):
        add(db, "job3", f'{{"a": {n}}}', queue_name="q" if n == 0 else None)
    events, log = logged()
    rec = Recorder()
    # A window far longer than the test: only the shutdown can write the completions.
    worker = make_worker(
        db_url, Job3, rec=rec, concurrency=3, complete_job_batch_delay=600, events=events
    )
    async with worker:
        await eventually(lambda: len(rec.seen("job3")) == 6)
        left = jobs(db)
        assert len(left) == 6
        assert {j["locked_by"] for j in left} == {worker.pool_id}
        # Outcome events wait for the batch to be written.
        assert log.count("job:success") == log.count("job:complete") == 0
    assert jobs(db) == []
    assert locks(db) == 0
    assert log.count("job:success") == log.count("job:complete") == 6


async def test_failures_through_the_batcher(db_url: str, db: psycopg.Connection) -> None:
    for n in range(5):
        add(db, "job3", f'{{"a": {n}}}')
    start = db.execute("select now()").fetchone()[0]  # type: ignore[index]
    rec = Recorder(fail_with=ValueError("nope"))
    await make_worker(db_url, Job3, rec=rec, concurrency=3, fail_job_batch_delay=0).run_once()
    left = jobs(db)
    assert len(left) == 5
    for job in left:
        assert (job["attempts"], job["last_error"], job["locked_by"]) == (
            1,
            "ValueError: nope",
            None,
        )
        assert job["run_at"] >= start + timedelta(seconds=2.7)


async def test_a_permanent_failure_through_the_batcher_unlocks_job_and_queue(
    db_url: str, db: psycopg.Connection
) -> None:
    add(db, "job3", '{"a": 1}', queue_name="q", max_attempts=1)
    events, log = logged()
    rec = Recorder(fail_with=RuntimeError("for good"))
    await make_worker(db_url, Job3, rec=rec, fail_job_batch_delay=0.01, events=events).run_once()
    (job,) = jobs(db)
    assert (job["attempts"], job["max_attempts"], job["locked_by"]) == (1, 1, None)
    assert job["last_error"] == "RuntimeError: for good"
    assert rows(db, "select locked_by from graphile_worker._private_job_queues") == [(None,)]
    assert log.count("job:failed") == 1


async def test_both_batchers_together(db_url: str, db: psycopg.Connection) -> None:
    ok = [add(db, "job3", f'{{"a": {n}}}') for n in range(4)]
    bad = [add(db, "gated", f'{{"n": {n}}}', queue_name=f"q{n}") for n in range(3)]
    rec = Recorder()
    rec.gate.set()
    # Gated jobs raise when their payload does not fit: n must be an int.
    db.execute(
        'update graphile_worker._private_jobs set payload = \'{"n": "x"}\' where id = any(%s)',
        (bad,),
    )
    await make_worker(
        db_url,
        Job3,
        Gated,
        rec=rec,
        concurrency=3,
        local_queue_size=10,
        complete_job_batch_delay=0,
        fail_job_batch_delay=0,
    ).run_once()
    left = jobs(db)
    assert sorted(j["id"] for j in left) == bad
    assert all(j["attempts"] == j["max_attempts"] and j["locked_by"] is None for j in left)
    assert all("does not fit Gated" in j["last_error"] for j in left)
    assert len(rec.seen("job3")) == len(ok)
    assert locks(db) == 0


async def test_a_partial_batch_failure_through_the_batcher_keeps_the_failed_items(
    db_url: str, db: psycopg.Connection
) -> None:
    add(db, "batch", '[{"a": 1}, {"a": 2}, {"a": 3}]')
    rec = Recorder(batch_result=[None, ValueError("two"), None])
    await make_worker(db_url, Item, rec=rec, fail_job_batch_delay=0).run_once()
    (job,) = jobs(db)
    assert job["payload"] == [{"a": 2}]
    assert job["attempts"] == 1
    assert "two" in job["last_error"]
    assert job["locked_by"] is None


_FAULTS = {
    "completeJob": "before delete",
    # Only the failure's update clears the lock and sets last_error at once.
    "failJob": "before update",
}


@pytest.mark.parametrize("action", ["completeJob", "failJob"])
async def test_a_batch_that_cannot_be_written_stops_the_worker_and_loses_no_job(
    db_url: str, db: psycopg.Connection, action: str
) -> None:
    ids = [add(db, "job3", f'{{"a": {n}}}', queue_name="q" if n == 0 else None) for n in range(6)]
    db.execute(
        "create function public.refuse() returns trigger language plpgsql as $$ begin"
        " if tg_op = 'DELETE' or (new.locked_by is null and old.locked_by is not null"
        " and new.last_error is distinct from old.last_error) then"
        " raise exception 'refused by the test'; end if;"
        " if tg_op = 'DELETE' then return old; end if; return new; end $$"
    )
    db.execute(
        f"create trigger refuse {_FAULTS[action]} on graphile_worker._private_jobs"
        " for each row execute function public.refuse()"
    )
    events, log = logged()
    rec = Recorder(fail_with=ValueError("bad") if action == "failJob" else None)
    options = {"complete_job_batch_delay": 0} if action == "completeJob" else {}
    options.update({"fail_job_batch_delay": 0} if action == "failJob" else {})
    worker = make_worker(
        db_url, Job3, rec=rec, concurrency=3, local_queue_size=10, events=events, **options
    )
    with pytest.raises(Exception, match="refused by the test"):
        await asyncio.wait_for(worker.run(), 60)
    fatal = await log.wait_for("pool:fatalError")
    assert isinstance(fatal, PoolErrorEvent)
    assert fatal.action == action
    assert log.count("pool:gracefulShutdown") == 1
    # Nothing lost, nothing released twice: every job is still there, attempted once,
    # and either locked by the stopped worker or given back unstarted.
    worker_id = fatal.pool_id
    left = jobs(db)
    assert sorted(j["id"] for j in left) == ids
    ran = Counter(p["a"] for p in rec.seen("job3"))
    for job in left:
        started = ran[job["payload"]["a"]]
        assert started <= 1
        assert job["attempts"] == started
        assert job["locked_by"] == (worker_id if started else None)
    # Once the fault is gone and the stopped worker's locks are cleared (as the stale-lock
    # sweep would), every job runs to the end.
    db.execute("drop trigger refuse on graphile_worker._private_jobs")
    async with WorkerUtils(db_url) as utils:
        await utils.force_unlock_workers([worker_id])
    rec.fail_with = None
    await make_worker(db_url, Job3, rec=rec, concurrency=3).run_once()
    assert jobs(db) == []
    assert locks(db) == 0
    assert set(Counter(p["a"] for p in rec.seen("job3"))) == set(range(6))


@pytest.mark.parametrize("batch_delay", [None, 0.0])
async def test_outcomes_committed_asynchronously_are_written_like_any_other(
    db_url: str, db: psycopg.Connection, batch_delay: float | None
) -> None:
    for n in range(12):
        add(db, "job3", f'{{"a": {n}}}', queue_name="q" if n % 4 == 0 else None)
    rec = Recorder()
    worker = make_worker(
        db_url,
        Job3,
        rec=rec,
        concurrency=3,
        asynchronous_release_commit=True,
        complete_job_batch_delay=batch_delay,
    )
    await worker.run_once()
    assert sorted(p["a"] for p in rec.seen("job3")) == list(range(12))
    assert jobs(db) == []
    assert locks(db) == 0
