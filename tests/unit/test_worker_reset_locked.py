"""The stale-lock sweep on the in-memory job store: what it clears, its events, its timer
and its errors."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from sqlalchemy_graphile.events import ResetLockedEvent, WorkerEvents
from sqlalchemy_graphile.worker._reset_locked import ResetLockedSweeper
from tests._fakes.jobs import FakeClock, FakeDatabase


async def test_a_sweep_clears_only_locks_older_than_four_hours() -> None:
    clock = FakeClock()
    database = FakeDatabase(clock=clock)
    store = database.store("pool")
    stale = database.add(queue_name="q")
    waiting = database.add(queue_name="q")
    tasks = await store.task_ids(["task"])
    await store.fetch(tasks, 1)
    clock.advance(timedelta(hours=3))
    fresh = database.add()
    await store.fetch(tasks, 1)
    events = WorkerEvents()
    seen: list[ResetLockedEvent] = []
    events.on("resetLocked:started", seen.append)
    events.on("resetLocked:success", seen.append)
    # The application's clock, an hour and a minute later: only the first lock is stale.
    later = clock() + timedelta(hours=1, minutes=1)
    sweeper = ResetLockedSweeper(
        store=store,
        events=events,
        min_interval=3600.0,
        max_interval=3600.0,
        use_local_time=True,
        clock=lambda: later,
    )

    await sweeper.sweep_now()

    cleared, kept = database.read(stale.id), database.read(fresh.id)
    assert cleared is not None
    assert kept is not None
    assert (cleared.locked_by, cleared.attempts, cleared.run_at) == (None, 1, later)
    assert kept.locked_by == "pool"
    # The queue's lock was cleared too: its best job (now the one that waited, due
    # earlier than the cleared one) is runnable.
    other = database.store("other")
    taken = await other.fetch(await other.task_ids(["task"]), 5, now=later)
    assert [job.id for job in taken] == [waiting.id]
    assert [(event.name, event.delay) for event in seen] == [
        ("resetLocked:started", None),
        ("resetLocked:success", None),
    ]


async def test_the_timer_sweeps_until_stopped() -> None:
    database = FakeDatabase()
    store = database.store("pool")
    events = WorkerEvents()
    swept = asyncio.Event()
    delays: list[float | None] = []

    def record(event: ResetLockedEvent) -> None:
        delays.append(event.delay)
        swept.set()

    events.on("resetLocked:success", record)
    sweeper = ResetLockedSweeper(
        store=store, events=events, min_interval=0.01, max_interval=0.02, use_local_time=False
    )

    sweeper.start()
    await swept.wait()
    await sweeper.stop()

    assert store.count("reset_stale_locks") >= 1
    assert all(delay is None or 0.01 <= delay <= 0.02 for delay in delays)


async def test_a_failed_sweep_is_reported_and_raised() -> None:
    database = FakeDatabase()
    store = database.store("pool")
    events = WorkerEvents()
    failures: list[ResetLockedEvent] = []
    events.on("resetLocked:failure", failures.append)
    store.fail_next("reset_stale_locks", RuntimeError("sweep broke"))
    sweeper = ResetLockedSweeper(
        store=store, events=events, min_interval=60.0, max_interval=60.0, use_local_time=False
    )

    with pytest.raises(RuntimeError, match="sweep broke"):
        await sweeper.sweep_now()

    assert [str(event.error) for event in failures] == ["sweep broke"]
