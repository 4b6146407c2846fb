"""Running jobs added with SQL, one run-once pass at a time (Graphile Worker's
``main.runTaskListOnce`` and ``runner.runOnce`` tests, adapted)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
import pytest

from ._worker_support import (
    Gated,
    Job2,
    Job3,
    Recorder,
    Serial,
    eventually,
    jobs,
    locks,
    make_worker,
    rows,
)

pytestmark = pytest.mark.schema_flavours("ours", "node")

E1 = 2.718281828
E2 = 7.389056099


def db_now(db: psycopg.Connection) -> object:
    return db.execute("select now()").fetchone()[0]  # type: ignore[index]


async def test_runs_jobs(db_url: str, db: psycopg.Connection) -> None:
    start = db_now(db)
    db.execute("""select graphile_worker.add_job('job3', '{"a":1}', queue_name := 'myqueue')""")
    end = db_now(db)
    (job,) = jobs(db)
    assert start <= job["run_at"] <= end
    assert rows(db, "select queue_name, locked_by from graphile_worker._private_job_queues") == [
        ("myqueue", None)
    ]
    rec = Recorder()
    await make_worker(db_url, Job3, Job2, rec=rec).run_once()
    assert rec.calls == [("job3", {"a": 1})]
    assert jobs(db) == []


async def test_schedules_errors_for_retry_and_retries(db_url: str, db: psycopg.Connection) -> None:
    db.execute("""select graphile_worker.add_job('job3', '{"a":1}', queue_name := 'myqueue')""")
    rec = Recorder(fail_with=RuntimeError("TEST_ERROR"))
    start = db_now(db)
    await make_worker(db_url, Job3, rec=rec).run_once()
    end = db_now(db)
    (job,) = jobs(db)
    assert (job["attempts"], job["max_attempts"]) == (1, 25)
    assert job["last_error"] == "RuntimeError: TEST_ERROR"
    assert start + timedelta(seconds=E1) <= job["run_at"] <= end + timedelta(seconds=E1 + 0.001)  # type: ignore[operator]
    assert job["locked_by"] is None
    assert locks(db) == 0

    # Not due yet: a second pass leaves it alone.
    await make_worker(db_url, Job3, rec=rec).run_once()
    assert len(rec.calls) == 1

    db.execute("update graphile_worker._private_jobs set run_at = now()")
    rec.fail_with = RuntimeError("TEST_ERROR 2")
    start = db_now(db)
    await make_worker(db_url, Job3, rec=rec).run_once()
    end = db_now(db)
    (job,) = jobs(db)
    assert job["attempts"] == 2
    assert job["last_error"] == "RuntimeError: TEST_ERROR 2"
    assert start + timedelta(seconds=E2) <= job["run_at"] <= end + timedelta(seconds=E2 + 0.001)  # type: ignore[operator]
    assert locks(db) == 0


async def test_supports_future_scheduled_jobs(db_url: str, db: psycopg.Connection) -> None:
    db.execute(
        """select graphile_worker.add_job('job3', '{"a":1}', run_at := now() + interval '3 s')"""
    )
    rec = Recorder()
    await make_worker(db_url, Job3, rec=rec).run_once()
    await make_worker(db_url, Job3, rec=rec).run_once()
    assert rec.calls == []
    db.execute("update graphile_worker._private_jobs set run_at = now()")
    await make_worker(db_url, Job3, rec=rec).run_once()
    assert rec.calls == [("job3", {"a": 1})]
    assert jobs(db) == []
    assert rows(db, "select * from graphile_worker._private_job_queues") == []


async def test_allows_update_of_pending_jobs(db_url: str, db: psycopg.Connection) -> None:
    (first,) = db.execute(
        """select id from graphile_worker.add_job('job3', '{"a":"wrong"}',
           run_at := now() + interval '1 day', job_key := 'abc')"""
    ).fetchone()  # type: ignore[misc]
    (second,) = db.execute(
        """select id from graphile_worker.add_job('job3', '{"a":1}', job_key := 'abc')"""
    ).fetchone()  # type: ignore[misc]
    assert first == second
    rec = Recorder()
    await make_worker(db_url, Job3, rec=rec).run_once()
    assert rec.calls == [("job3", {"a": 1})]
    assert jobs(db) == []


async def test_schedules_a_new_job_if_existing_is_completed(
    db_url: str, db: psycopg.Connection
) -> None:
    rec = Recorder()
    db.execute("""select graphile_worker.add_job('job3', '{"a":1}', job_key := 'abc')""")
    await make_worker(db_url, Job3, rec=rec).run_once()
    db.execute("""select graphile_worker.add_job('job3', '{"a":2}', job_key := 'abc')""")
    await make_worker(db_url, Job3, rec=rec).run_once()
    assert rec.seen("job3") == [{"a": 1}, {"a": 2}]
    assert jobs(db) == []


async def test_schedules_a_new_job_if_existing_is_being_processed(
    db_url: str, db: psycopg.Connection
) -> None:
    rec = Recorder()
    db.execute("""select graphile_worker.add_job('gated', '{"n":1}', job_key := 'abc')""")
    running = asyncio.create_task(make_worker(db_url, Gated, rec=rec).run_once())
    async with rec.gate_opened_at_exit():
        await rec.wait_started()
        db.execute("""select graphile_worker.add_job('gated', '{"n":2}', job_key := 'abc')""")
        assert len(jobs(db)) == 2
    await running
    # The first pass may or may not have picked up the replacement; run until drained.
    await make_worker(db_url, Gated, rec=rec).run_once()
    assert rec.seen("gated") == [1, 2]
    assert jobs(db) == []


async def test_schedules_a_new_job_if_the_existing_is_pending_retry(
    db_url: str, db: psycopg.Connection
) -> None:
    rec = Recorder(fail_with=RuntimeError("TEST_ERROR"))
    (first,) = db.execute(
        """select id from graphile_worker.add_job('job3', '{"a":1}', job_key := 'abc')"""
    ).fetchone()  # type: ignore[misc]
    await make_worker(db_url, Job3, rec=rec).run_once()
    (job,) = jobs(db)
    assert job["attempts"] == 1
    assert job["last_error"] == "RuntimeError: TEST_ERROR"
    (second,) = db.execute(
        """select id from graphile_worker.add_job('job3', '{"a":2}', job_key := 'abc')"""
    ).fetchone()  # type: ignore[misc]
    assert second == first
    (job,) = jobs(db)
    assert (job["attempts"], job["last_error"]) == (0, None)
    rec.fail_with = None
    await make_worker(db_url, Job3, rec=rec).run_once()
    assert rec.seen("job3") == [{"a": 1}, {"a": 2}]
    assert jobs(db) == []


async def test_job_details_are_reset_if_not_specified_in_update(
    db_url: str, db: psycopg.Connection
) -> None:
    (first,) = db.execute(
        """select id from graphile_worker.add_job('job3', '{"a":1}', queue_name := 'queue1',
           run_at := now() + interval '1 day', max_attempts := 10, job_key := 'abc')"""
    ).fetchone()  # type: ignore[misc]
    db.execute("select graphile_worker.add_job('job3', job_key := 'abc')")
    (job,) = jobs(db)
    assert job["id"] == first
    assert (job["max_attempts"], job["payload"], job["queue_name"], job["attempts"]) == (
        25,
        {},
        None,
        0,
    )
    db.execute(
        """select graphile_worker.add_job('job2', '{"b":2}', queue_name := 'queue2',
           max_attempts := 100, job_key := 'abc')"""
    )
    (view,) = rows(
        db, "select id, task_identifier, queue_name, max_attempts from graphile_worker.jobs"
    )
    assert view == (first, "job2", "queue2", 100)
    rec = Recorder()
    await make_worker(db_url, Job3, Job2, rec=rec).run_once()
    assert rec.calls == [("job2", {})]


async def test_pending_jobs_can_be_removed(db_url: str, db: psycopg.Connection) -> None:
    db.execute("""select graphile_worker.add_job('job3', '{"a":1}', job_key := 'abc')""")
    db.execute("select graphile_worker.remove_job('abc')")
    rec = Recorder()
    await make_worker(db_url, Job3, rec=rec).run_once()
    assert rec.calls == []
    assert jobs(db) == []


async def test_jobs_in_progress_cannot_be_removed(db_url: str, db: psycopg.Connection) -> None:
    rec = Recorder()
    db.execute("""select graphile_worker.add_job('gated', '{"n":1}', job_key := 'abc')""")
    running = asyncio.create_task(make_worker(db_url, Gated, rec=rec).run_once())
    async with rec.gate_opened_at_exit():
        await rec.wait_started()
        db.execute("select graphile_worker.remove_job('abc')")
        assert len(jobs(db)) == 1
    await running
    assert rec.seen("gated") == [1]
    assert jobs(db) == []


async def test_runs_jobs_asynchronously(db_url: str, db: psycopg.Connection) -> None:
    rec = Recorder()
    db.execute("""select graphile_worker.add_job('gated', '{"n":1}', queue_name := 'myqueue')""")
    start = db_now(db)
    worker = make_worker(db_url, Gated, rec=rec)
    running = asyncio.create_task(worker.run_once())
    async with rec.gate_opened_at_exit():
        await rec.wait_started()
        end = db_now(db)
        (job,) = jobs(db)
        assert job["attempts"] == 1
        assert job["locked_by"] == worker.pool_id
        assert worker.pool_id.startswith("sgotpool-")
        ((locked_at, locked_by),) = rows(
            db, "select locked_at, locked_by from graphile_worker._private_job_queues"
        )
        assert locked_by == worker.pool_id
        assert start <= locked_at <= end
        assert not running.done()
        pool_id = worker.pool_id
    await running
    assert jobs(db) == []
    assert locks(db) == 0
    # The next run gets a fresh id.
    assert worker.pool_id.startswith("sgpool-")
    assert worker.pool_id != pool_id


async def test_runs_jobs_in_parallel(db_url: str, db: psycopg.Connection) -> None:
    rec = Recorder()
    for n in range(5):
        db.execute(
            "select graphile_worker.add_job('gated', json_build_object('n', %s::int),"
            " queue_name := 'queue_' || %s::text)",
            (n, n),
        )
    # Continuous workers: a run-once pool whose fetch meets the others' queue locks (held
    # for the length of their fetch statements) would find nothing and stop.
    workers = [make_worker(db_url, Gated, rec=rec, poll_interval=0.05) for _ in range(5)]
    running = [asyncio.create_task(w.run()) for w in workers]
    async with rec.gate_opened_at_exit():
        await eventually(lambda: rec.running == 5)
        owners = [
            r[0] for r in rows(db, "select locked_by from graphile_worker._private_job_queues")
        ]
        assert sorted(owners) == sorted(w.pool_id for w in workers)
    await eventually(lambda: not jobs(db))
    await asyncio.gather(*(w.stop() for w in workers))
    await asyncio.gather(*running)
    assert sorted(rec.seen("gated")) == [0, 1, 2, 3, 4]
    assert jobs(db) == []


async def test_single_worker_runs_jobs_in_series(db_url: str, db: psycopg.Connection) -> None:
    rec = Recorder()
    for n in range(5):
        db.execute(
            "select graphile_worker.add_job('serial', json_build_object('n', %s::int))", (n,)
        )
    await make_worker(db_url, Serial, rec=rec).run_once()
    assert rec.seen("serial") == [0, 1, 2, 3, 4]
    assert rec.max_running == 1
    assert jobs(db) == []


async def test_jobs_in_one_queue_run_serially_even_with_several_workers(
    db_url: str, db: psycopg.Connection
) -> None:
    rec = Recorder()
    for n in range(5):
        db.execute(
            "select graphile_worker.add_job('serial', json_build_object('n', %s::int),"
            " queue_name := 'serial')",
            (n,),
        )
    workers = [make_worker(db_url, Serial, rec=rec, concurrency=2) for _ in range(3)]
    await asyncio.gather(*(w.run_once() for w in workers))
    # Pools that found the queue locked stop early; drain what is left.
    while jobs(db):
        await make_worker(db_url, Serial, rec=rec).run_once()
    assert sorted(rec.seen("serial")) == [0, 1, 2, 3, 4]
    assert rec.max_running == 1


async def test_priority_order_with_concurrency_one(db_url: str, db: psycopg.Connection) -> None:
    rec = Recorder()
    for n, priority in enumerate([5, -3, 0, 5, -10]):
        db.execute(
            "select graphile_worker.add_job('serial', json_build_object('n', %s::int),"
            " priority := %s, run_at := now() - make_interval(secs => 10 - %s))",
            (n, priority, n),
        )
    await make_worker(db_url, Serial, rec=rec).run_once()
    # priority asc, then run_at asc (earlier-added jobs have earlier run_at here)
    assert rec.seen("serial") == [4, 1, 2, 0, 3]


async def test_run_once_runs_all_available_tasks_and_exits(
    db_url: str, db: psycopg.Connection
) -> None:
    # Not runnable: future, permanently failed, locked by someone else, unknown task.
    db.execute("select graphile_worker.add_job('job3', run_at := now() + interval '1 day')")
    db.execute("select graphile_worker.add_job('job3', max_attempts := 1)")
    db.execute("update graphile_worker._private_jobs set attempts = 1 where max_attempts = 1")
    db.execute("select graphile_worker.add_job('job3', job_key := 'locked')")
    db.execute(
        "update graphile_worker._private_jobs set locked_by = 'sgpool-other', locked_at = now()"
        " where key = 'locked'"
    )
    db.execute("select graphile_worker.add_job('unknown_task')")
    fixture = {j["id"] for j in jobs(db)}
    for n in range(6):
        db.execute("select graphile_worker.add_job('job3', json_build_object('a', %s::int))", (n,))
    rec = Recorder()
    await make_worker(db_url, Job3, rec=rec, concurrency=3).run_once()
    assert sorted(p["a"] for p in rec.seen("job3")) == [0, 1, 2, 3, 4, 5]
    assert {j["id"] for j in jobs(db)} == fixture
