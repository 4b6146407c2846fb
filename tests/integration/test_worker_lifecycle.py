"""A continuous worker: wake-ups, outages, shutdown, the stale-lock sweep, events and the
start-up schema check."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import ClassVar

import asyncpg
import psycopg
import pytest

from sqlalchemy_graphile import (
    SchemaNotInstalledError,
    SchemaTooNewError,
    Task,
    WorkerContext,
    WorkerEvents,
)

from ._worker_support import (
    Gated,
    Job2,
    Job3,
    Recorder,
    add,
    jobs,
    locks,
    logged,
    make_worker,
    rows,
)

pytestmark = pytest.mark.schema_flavours("ours", "node")


class WaitsForAbort(Task):
    IDENTIFIER: ClassVar[str] = "waits_for_abort"

    async def run(self, ctx: WorkerContext) -> None:
        rec = ctx.get_ext(Recorder)
        assert rec is not None
        rec.mark_started()
        await ctx.abort_signal.wait()
        raise RuntimeError("aborted by the shutdown")


async def test_notify_wakes_an_idle_worker_despite_a_long_poll_interval(
    db_url: str, db: psycopg.Connection
) -> None:
    events, log = logged()
    rec = Recorder()
    async with make_worker(db_url, Job3, rec=rec, poll_interval=60.0, events=events):
        await log.wait_for("pool:listen:success")
        await log.wait_for("worker:getJob:empty")
        for n in range(5):
            add(db, "job3", f'{{"a":{n}}}')
            await log.wait_for("job:complete", n + 1)
    assert [p["a"] for p in rec.seen("job3")] == [0, 1, 2, 3, 4]
    assert jobs(db) == []
    assert locks(db) == 0


async def test_worker_survives_its_listen_connection_being_terminated(
    db_url: str, db: psycopg.Connection
) -> None:
    events, log = logged()
    rec = Recorder()
    async with make_worker(db_url, Job3, rec=rec, poll_interval=60.0, events=events):
        await log.wait_for("pool:listen:success")
        await log.wait_for("worker:getJob:empty")
        (killed,) = db.execute(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity"
            " where datname = current_database() and application_name = 'sg-worker-listen'"
        ).fetchone()  # type: ignore[misc]
        assert killed == 1
        # A job added during the gap is found by the fetch that follows the reconnection.
        add(db, "job3", '{"a":1}')
        await log.wait_for("pool:listen:error")
        await log.wait_for("pool:listen:success", 2)
        await log.wait_for("job:complete")
        add(db, "job3", '{"a":2}')
        await log.wait_for("job:complete", 2)
    assert [p["a"] for p in rec.seen("job3")] == [1, 2]
    connecting = [e for e in log.events if e.name == "pool:listen:connecting"]
    assert [e.attempts for e in connecting] == [0, 1]  # type: ignore[attr-defined]


async def test_worker_survives_fetch_errors(
    db_url: str, db: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    events, log = logged()
    rec = Recorder()
    # No recovery sweep: its statement, prepared on first use, would hold a lock on the jobs
    # table between its parse and its execution, and the blocking ALTER TABLE below keeps
    # the event loop from finishing it.
    worker = make_worker(
        db_url, Job3, rec=rec, poll_interval=0.05, listen=False, events=events, sweep_interval=None
    )
    async with worker:
        await log.wait_for("worker:getJob:empty")
        # In a thread: the rename waits for the fetch in flight, which needs the event loop.
        await asyncio.to_thread(
            db.execute, "alter table graphile_worker._private_jobs rename to _private_jobs_away"
        )
        await log.wait_for("worker:getJob:error", 3)
        await asyncio.to_thread(
            db.execute, "alter table graphile_worker._private_jobs_away rename to _private_jobs"
        )
        add(db, "job3", '{"a":1}')
        await log.wait_for("job:complete")
    assert rec.seen("job3") == [{"a": 1}]
    fetch_logs = [r for r in caplog.records if r.message.startswith("fetching jobs failed;")]
    assert len(fetch_logs) == 1  # once per outage, not once per retry


async def test_graceful_stop_lets_the_running_job_finish_and_leaves_no_locks(
    db_url: str, db: psycopg.Connection
) -> None:
    rec = Recorder()
    events = WorkerEvents()
    shutting_down = asyncio.Event()
    events.on("pool:gracefulShutdown", lambda _event: shutting_down.set())
    add(db, "gated", '{"n":1}', queue_name="q")
    worker = make_worker(db_url, Gated, rec=rec, concurrency=2, events=events)
    running = asyncio.create_task(worker.run())
    async with rec.gate_opened_at_exit():
        await rec.wait_started()
        assert locks(db) == 2  # the job and its queue
        stopping = asyncio.create_task(worker.stop())
        await asyncio.wait_for(shutting_down.wait(), 15)
        assert not stopping.done()  # the shutdown has begun and waits for the running job
        assert locks(db) == 2
    await stopping
    await running
    assert jobs(db) == []
    assert locks(db) == 0


@pytest.mark.parametrize("mode", ["run", "run_once"])
async def test_graceful_shutdown_sets_the_abort_signal(
    db_url: str, db: psycopg.Connection, mode: str
) -> None:
    rec = Recorder()
    add(db, "waits_for_abort")
    worker = make_worker(db_url, WaitsForAbort, rec=rec, graceful_shutdown_abort_timeout=0.02)
    running = asyncio.create_task(getattr(worker, mode)())
    await rec.wait_started("waits_for_abort")
    await worker.stop()
    await running
    (job,) = jobs(db)
    assert job["last_error"] == "RuntimeError: aborted by the shutdown"
    assert job["attempts"] == 1
    assert locks(db) == 0


async def test_forceful_stop_fails_the_running_job(db_url: str, db: psycopg.Connection) -> None:
    rec = Recorder()
    add(db, "gated", '{"n":1}', queue_name="q")
    events, log = logged()
    worker = make_worker(db_url, Gated, rec=rec, events=events)
    running = asyncio.create_task(worker.run())
    await rec.wait_started()
    start = db.execute("select now()").fetchone()[0]  # type: ignore[index]
    await worker.stop(force=True)
    await running
    (job,) = jobs(db)
    assert job["attempts"] == 1
    assert job["last_error"] == "the worker was stopped forcefully while the job ran"
    assert (job["run_at"] - start).total_seconds() >= 2.718
    assert locks(db) == 0
    assert rec.running == 0  # the task was cancelled
    assert log.count("pool:forcefulShutdown:complete") == 1


async def test_breaking_migration_notification_stops_the_worker_with_57(
    db_url: str, db: psycopg.Connection
) -> None:
    events, log = logged()
    worker = make_worker(db_url, Job3, events=events)
    running = asyncio.create_task(worker.run())
    await log.wait_for("pool:listen:success")
    db.execute("""select pg_notify('worker:migrate', '{"migrationNumber":20,"breaking":false}')""")
    db.execute("""select pg_notify('worker:migrate', '{"migrationNumber":21,"breaking":true}')""")
    await asyncio.wait_for(running, 15)
    assert worker.exit_code == 57
    assert log.count("pool:gracefulShutdown:complete") == 1


async def test_reset_locked_clears_only_locks_older_than_four_hours(
    db_url: str, db: psycopg.Connection
) -> None:
    for n, age in enumerate([None, "5 minutes", "4 hours 1 minute"]):
        add(db, "serial", f'{{"n":{n}}}', queue_name=f"serial{n}", job_key=f"k{n}")
        if age is not None:
            for table, where in (("_private_jobs", "key"), ("_private_job_queues", "queue_name")):
                value = f"k{n}" if where == "key" else f"serial{n}"
                db.execute(
                    f"update graphile_worker.{table} set locked_by = 'sgpool-dead',"
                    f" locked_at = now() - %s::interval where {where} = %s",
                    (age, value),
                )
    events, log = logged()
    worker = make_worker(
        db_url,
        Job2,  # nothing above is runnable by this worker
        events=events,
        min_reset_locked_interval=0.001,
        max_reset_locked_interval=0.001,
    )
    async with worker:
        success = await log.wait_for("resetLocked:success")
    assert log.names().index("resetLocked:started") < log.names().index("resetLocked:success")
    assert success.delay == pytest.approx(0.001)  # type: ignore[attr-defined]
    state = {
        r[0]: r[1:]
        for r in rows(
            db,
            "select j.key, j.locked_by, q.locked_by, j.run_at <= now() from"
            " graphile_worker._private_jobs j join graphile_worker._private_job_queues q"
            " on q.id = j.job_queue_id",
        )
    }
    assert state == {
        "k0": (None, None, True),
        "k1": ("sgpool-dead", "sgpool-dead", True),
        "k2": (None, None, True),
    }


async def test_events_are_emitted_in_order(db_url: str, db: psycopg.Connection) -> None:
    events, log = logged()
    worker = make_worker(db_url, Job3, concurrency=3, events=events, poll_interval=60.0)
    rec_fail = Recorder(fail_with=RuntimeError("nope"))
    failing = make_worker(db_url, Job3, rec=rec_fail, events=events)
    running = asyncio.create_task(worker.run())
    await log.wait_for("worker:getJob:empty", 3)
    assert log.count("pool:create") == 1
    assert log.count("pool:listen:connecting") == 1
    assert log.count("worker:create") == 3
    add(db, "job3", '{"a":1}')
    done = await log.wait_for("job:complete")
    slot = done.worker_id  # type: ignore[attr-defined]
    per_job = [e.name for e in log.events if getattr(e, "worker_id", None) == slot]
    start = per_job.index("job:start")
    assert per_job[start - 1 : start + 3] == [
        "worker:getJob:start",
        "job:start",
        "job:success",
        "job:complete",
    ]
    await worker.stop()
    await running
    for name, count in [
        ("stop", 1),
        ("worker:release", 3),
        ("worker:stop", 3),
        ("pool:release", 1),
        ("pool:gracefulShutdown:complete", 1),
    ]:
        assert log.count(name) == count, name
    assert jobs(db) == []

    add(db, "job3", '{"a":2}', max_attempts=1)
    log.events.clear()
    await failing.run_once()
    job_events = [e.name for e in log.events if e.name.startswith("job:")]
    assert job_events == ["job:start", "job:error", "job:failed", "job:complete"]


async def test_a_raising_event_callback_is_logged_and_ignored(
    db_url: str, db: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    events = WorkerEvents()

    def broken(_event: object) -> None:
        raise RuntimeError("listener bug")

    async def broken_async(_event: object) -> None:
        raise RuntimeError("async listener bug")

    events.on("job:start", broken)
    events.on("job:start", broken_async)
    add(db, "job3", '{"a":1}')
    rec = Recorder()
    with caplog.at_level(logging.ERROR, logger="sqlalchemy_graphile.events"):
        await make_worker(db_url, Job3, rec=rec, events=events).run_once()
    assert rec.seen("job3") == [{"a": 1}]
    assert jobs(db) == []
    messages = [r.getMessage() for r in caplog.records if r.name == "sqlalchemy_graphile.events"]
    assert any("job:start" in m for m in messages)
    assert any("async callback" in m for m in messages)


async def test_a_lost_lock_fences_the_completion(
    db_url: str, db: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    add(db, "gated", '{"n":1}')
    running = asyncio.create_task(make_worker(db_url, Gated, rec=rec).run_once())
    async with rec.gate_opened_at_exit():
        await rec.wait_started()
        db.execute("update graphile_worker._private_jobs set locked_by = 'sgpool-thief'")
    await running
    (job,) = jobs(db)
    assert job["locked_by"] == "sgpool-thief"
    assert any("no longer locked by this worker" in r.getMessage() for r in caplog.records)


async def test_schema_missing_at_start(empty_db_url: str) -> None:
    with pytest.raises(SchemaNotInstalledError, match="alembic upgrade head"):
        await make_worker(empty_db_url, Job3).run()


async def test_schema_too_new_at_start(db_url: str, db: psycopg.Connection) -> None:
    db.execute("insert into graphile_worker.migrations (id, breaking) values (999999, true)")
    with pytest.raises(SchemaTooNewError, match="999999") as raised:
        await make_worker(db_url, Job3).run_once()
    assert raised.value.exit_code == 57


async def test_signal_handlers_are_installed_only_while_running(db_url: str) -> None:
    before = signal.getsignal(signal.SIGTERM)
    events, log = logged()
    worker = make_worker(db_url, Job3, events=events, handle_signals=True)
    async with worker:
        await log.wait_for("worker:getJob:empty")
        assert signal.getsignal(signal.SIGTERM) is not before
        # A second worker in the process shares the handlers.
        async with make_worker(db_url, Job3, handle_signals=True):
            pass
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


async def test_an_outcome_that_cannot_be_written_stops_the_worker_with_the_error(
    db_url: str, db: psycopg.Connection
) -> None:
    events, log = logged()
    rec = Recorder()
    add(db, "gated", '{"n":1}', queue_name="q")
    worker = make_worker(db_url, Gated, rec=rec, events=events)
    running = asyncio.create_task(worker.run())
    await rec.wait_started()
    await asyncio.to_thread(
        db.execute, "alter table graphile_worker._private_job_queues rename to _queues_away"
    )
    try:
        rec.gate.set()
        with pytest.raises(ExceptionGroup) as raised:
            await asyncio.wait_for(running, 30)
        # First the slot's error, then those of the shutdown steps that met the same table.
        assert isinstance(raised.value.exceptions[0], asyncpg.UndefinedTableError)
    finally:
        db.execute("alter table graphile_worker._queues_away rename to _private_job_queues")
    fatal = await log.wait_for("worker:fatalError")
    assert fatal.job is not None  # type: ignore[attr-defined]
    assert log.count("pool:release") == 1
    assert log.count("job:complete") == 0
