"""The local queue (``local_queue_size``): batch fetches, modes and events, giving jobs back,
the refetch delay, and named queues that stay serial at any batch size."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import psycopg
import pytest

from sqlalchemy_graphile import (
    LocalQueueEvent,
    LocalQueueMode,
    RefetchDelay,
    Task,
    Worker,
    WorkerContext,
)

from ._worker_support import (
    EventLog,
    Gated,
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


def add_many(db: psycopg.Connection, identifier: str, count: int) -> None:
    db.execute(
        "select graphile_worker.add_jobs(array(select row(%s, json_build_object('a', n),"
        " null, null, null, null, null, null)::graphile_worker.job_spec"
        " from generate_series(1, %s) as n))",
        (identifier, count),
    )


def modes(log: EventLog) -> list[tuple[str | None, str | None]]:
    return [
        (e.old_mode, e.new_mode)
        for e in log.events
        if isinstance(e, LocalQueueEvent) and e.name == "localQueue:setMode"
    ]


def fetched_counts(log: EventLog) -> list[int]:
    return [
        len(e.jobs or ())
        for e in log.events
        if isinstance(e, LocalQueueEvent) and e.name == "localQueue:getJobs:complete"
    ]


async def test_batch_fetches_process_every_job_once(db_url: str, db: psycopg.Connection) -> None:
    add_many(db, "job3", 25)
    events, log = logged()
    rec = Recorder()
    worker = make_worker(db_url, Job3, rec=rec, concurrency=4, local_queue_size=10, events=events)
    await worker.run_once()
    assert sorted(p["a"] for p in rec.seen("job3")) == list(range(1, 26))
    assert jobs(db) == []
    assert locks(db) == 0
    counts = fetched_counts(log)
    assert sum(counts) == 25
    assert max(counts) == 10


async def test_size_one_works(db_url: str, db: psycopg.Connection) -> None:
    add_many(db, "job3", 5)
    rec = Recorder()
    await make_worker(db_url, Job3, rec=rec, concurrency=2, local_queue_size=1).run_once()
    assert sorted(p["a"] for p in rec.seen("job3")) == [1, 2, 3, 4, 5]
    assert jobs(db) == []


async def test_size_far_above_the_job_count_and_many_jobs(
    db_url: str, db: psycopg.Connection
) -> None:
    add_many(db, "job3", 3)
    rec = Recorder()
    await make_worker(db_url, Job3, rec=rec, local_queue_size=500).run_once()
    assert sorted(p["a"] for p in rec.seen("job3")) == [1, 2, 3]
    add_many(db, "job3", 300)
    rec = Recorder()
    await make_worker(db_url, Job3, rec=rec, concurrency=8, local_queue_size=7).run_once()
    assert sorted(p["a"] for p in rec.seen("job3")) == list(range(1, 301))
    assert jobs(db) == []


async def test_an_empty_queue_then_jobs_added_later(db_url: str, db: psycopg.Connection) -> None:
    events, log = logged()
    rec = Recorder()
    worker = make_worker(db_url, Job3, rec=rec, concurrency=2, local_queue_size=5, events=events)
    async with worker:
        await log.wait_for("localQueue:getJobs:complete")
        assert fetched_counts(log)[0] == 0
        add_many(db, "job3", 7)
        await eventually(lambda: len(rec.seen("job3")) == 7)
    assert jobs(db) == []


async def test_a_notification_triggers_a_fetch_at_once(db_url: str, db: psycopg.Connection) -> None:
    events, log = logged()
    rec = Recorder()
    worker = make_worker(
        db_url, Job3, rec=rec, local_queue_size=5, poll_interval=100.0, events=events
    )
    async with worker:
        await log.wait_for("pool:listen:success")
        await log.wait_for("localQueue:getJobs:complete")
        add(db, "job3", '{"a": 1}')  # add_job notifies; the next poll is 100 s away
        await eventually(lambda: rec.seen("job3") == [{"a": 1}])
    assert log.count("localQueue:getJobs:complete") >= 2


async def test_mode_transitions_are_reported(db_url: str, db: psycopg.Connection) -> None:
    add_many(db, "job3", 3)
    events, log = logged()
    worker = make_worker(db_url, Job3, local_queue_size=2, events=events)
    await worker.run_once()
    assert log.count("localQueue:init") == 1
    seen = modes(log)
    assert seen[0] == ("STARTING", "POLLING")
    assert ("POLLING", "WAITING") in seen
    assert ("WAITING", "POLLING") in seen
    assert seen[-1][1] == "RELEASED"
    assert seen[-1][1] is LocalQueueMode.RELEASED
    assert fetched_counts(log)[:2] == [2, 1]


async def test_run_once_drains_and_exits(db_url: str, db: psycopg.Connection) -> None:
    add_many(db, "job3", 12)
    for n in range(4):
        add(db, "job3", f'{{"a": {100 + n}}}', queue_name="q")
    rec = Recorder()
    await make_worker(db_url, Job3, rec=rec, concurrency=3, local_queue_size=50).run_once()
    assert len(rec.seen("job3")) == 16
    assert jobs(db) == []
    assert locks(db) == 0


async def test_shutdown_gives_cached_jobs_back_with_their_attempt(
    db_url: str, db: psycopg.Connection
) -> None:
    for n in range(5):
        add(db, "gated", f'{{"n": {n}}}')
    events, log = logged()
    rec = Recorder()
    worker = make_worker(db_url, Gated, rec=rec, local_queue_size=10, events=events)
    async with worker, rec.gate_opened_at_exit():
        await rec.wait_started()
        stopping = asyncio.create_task(worker.stop())
        returned = await log.wait_for("localQueue:returnJobs")
        rec.gate.set()
        await stopping
    assert isinstance(returned, LocalQueueEvent)
    assert returned.jobs is not None
    assert len(returned.jobs) == 4
    left = jobs(db)
    assert len(left) == 4
    assert all(j["locked_by"] is None and j["attempts"] == 0 for j in left)
    assert locks(db) == 0
    assert modes(log)[-1] == ("WAITING", "RELEASED")


async def test_jobs_waiting_past_the_ttl_are_given_back(
    db_url: str, db: psycopg.Connection
) -> None:
    for n in range(4):
        add(db, "gated", f'{{"n": {n}}}')
    events, log = logged()
    rec = Recorder()
    worker = make_worker(
        db_url, Gated, rec=rec, local_queue_size=10, local_queue_ttl=0.2, events=events
    )
    async with worker, rec.gate_opened_at_exit():
        await rec.wait_started()
        returned = await log.wait_for("localQueue:returnJobs")
        assert isinstance(returned, LocalQueueEvent)
        assert len(returned.jobs or ()) == 3
        assert ("WAITING", "TTL_EXPIRED") in modes(log)
        await eventually(
            lambda: (
                [(j["locked_by"], j["attempts"]) for j in jobs(db) if j["locked_by"] is None]
                == [(None, 0)] * 3
            )
        )
        rec.gate.set()  # the slot asks again: back to polling, and everything runs
        await eventually(lambda: jobs(db) == [])
    assert sorted(rec.seen("gated")) == [0, 1, 2, 3]
    assert ("TTL_EXPIRED", "POLLING") in modes(log)


async def test_forbidden_flags_bypass_the_local_queue(db_url: str, db: psycopg.Connection) -> None:
    add(db, "job3", '{"a": 1}', flags=["skip"])
    add(db, "job3", '{"a": 2}')
    events, log = logged()
    rec = Recorder()
    worker = make_worker(
        db_url,
        Job3,
        rec=rec,
        local_queue_size=10,
        forbidden_flags=lambda: ["skip"],
        events=events,
    )
    await worker.run_once()
    assert rec.seen("job3") == [{"a": 2}]
    assert [j["payload"] for j in jobs(db)] == [{"a": 1}]
    assert log.count("localQueue:getJobs:complete") == 0
    assert locks(db) == 0


async def test_a_refetch_delay_follows_a_fetch_below_the_threshold(
    db_url: str, db: psycopg.Connection
) -> None:
    add(db, "job3", '{"a": 1}')
    events, log = logged()
    rec = Recorder()
    worker = make_worker(
        db_url,
        Job3,
        rec=rec,
        local_queue_size=10,
        poll_interval=0.5,
        local_queue_refetch_delay=RefetchDelay(duration=0.2, threshold=5),
        events=events,
    )
    async with worker:
        start = await log.wait_for("localQueue:refetchDelay:start")
        await log.wait_for("localQueue:refetchDelay:expired")
        await eventually(lambda: rec.seen("job3") == [{"a": 1}])
    assert isinstance(start, LocalQueueEvent)
    assert (start.job_count, start.threshold) == (1, 5)
    assert start.delay is not None
    assert 0.1 <= start.delay <= 0.3
    assert start.abort_threshold is not None
    assert start.abort_threshold <= 50


async def test_notifications_abort_the_refetch_delay(db_url: str, db: psycopg.Connection) -> None:
    events, log = logged()
    rec = Recorder()
    worker = make_worker(
        db_url,
        Job3,
        rec=rec,
        local_queue_size=10,
        poll_interval=100.0,
        local_queue_refetch_delay=RefetchDelay(duration=60.0, max_abort_threshold=1),
        events=events,
    )
    async with worker:
        await log.wait_for("pool:listen:success")
        await log.wait_for("localQueue:refetchDelay:start")
        add(db, "job3", '{"a": 7}')  # one announced job reaches a threshold below 1
        abort = await log.wait_for("localQueue:refetchDelay:abort")
        await eventually(lambda: rec.seen("job3") == [{"a": 7}])
    assert isinstance(abort, LocalQueueEvent)
    assert abort.count == 1
    assert log.count("localQueue:refetchDelay:expired") == 0


class Ledgered(Task):
    """Records its start and end in the shared recorder, yielding to the loop in between."""

    IDENTIFIER: ClassVar[str] = "ledgered"
    n: int
    queued: bool

    async def run(self, ctx: WorkerContext) -> None:
        rec = ctx.get_ext(Recorder)
        assert rec is not None
        rec.calls.append(("start", (self.queued, self.n)))
        for _ in range(3):
            await asyncio.sleep(0)
        rec.calls.append(("end", (self.queued, self.n)))


async def test_named_queues_stay_serial_with_batches_of_500(
    db_url: str, db: psycopg.Connection
) -> None:
    queued = 60
    db.execute(
        "select graphile_worker.add_jobs(array(select row('ledgered',"
        " json_build_object('n', n, 'queued', true), 'serial',"
        " now() - (%s - n) * interval '1 second', null, null, null, null)::graphile_worker.job_spec"
        " from generate_series(1, %s) as n))",
        (queued, queued),
    )
    db.execute(
        "select graphile_worker.add_jobs(array(select row('ledgered',"
        " json_build_object('n', n, 'queued', false), null, null, null, null, null, null"
        ")::graphile_worker.job_spec from generate_series(1, 100) as n))"
    )
    rec = Recorder()
    workers = [
        Worker(
            db_url,
            tasks=[Ledgered],
            concurrency=4,
            local_queue_size=500,
            complete_job_batch_delay=0,
            extensions=[rec],
            handle_signals=False,
        )
        for _ in range(3)
    ]
    await asyncio.gather(*(worker.run_once() for worker in workers))
    assert jobs(db) == []
    serial = [(what, n) for what, (is_queued, n) in rec.calls if is_queued]
    # No overlap: every start is followed by its own end before the next start.
    assert serial == [(what, n) for n in range(1, queued + 1) for what in ("start", "end")]
    assert len([c for c in rec.calls if c[0] == "start"]) == queued + 100
    assert rows(
        db, "select count(*) from graphile_worker._private_job_queues where locked_by is not null"
    ) == [(0,)]
