"""The direct job source on the in-memory job store: one job per fetch, flags and the
application's clock, run-once waits for named queues, release."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy_graphile.worker._fetch import DirectJobSource
from sqlalchemy_graphile.worker._task_ids import TaskIdentifiers
from tests._fakes.jobs import FakeDatabase, FakeJobStore


def source(
    store: FakeJobStore, *, continuous: bool, clock: Callable[[], datetime] | None = None
) -> DirectJobSource:
    """A direct source of the task ``task``; with ``clock``, on the application's time."""
    task_ids = TaskIdentifiers(store, ["task"])
    if clock is None:
        return DirectJobSource(store, task_ids, use_local_time=False, continuous=continuous)
    return DirectJobSource(store, task_ids, use_local_time=True, continuous=continuous, clock=clock)


async def test_one_job_per_fetch_with_flags_and_the_applications_clock() -> None:
    database = FakeDatabase()
    store = database.store("pool")
    later = database.clock() + timedelta(hours=1)
    flagged = database.add(flags=("x",))
    due_later = database.add(run_at=later)
    direct = source(store, continuous=True, clock=lambda: later)

    first = await direct.get_job(["x"])
    second = await direct.get_job(["x"])
    third = await direct.get_job(None)

    assert first is not None
    assert first.id == due_later.id
    assert first.job.locked_at == later
    assert second is None
    assert third is not None
    assert third.id == flagged.id
    assert [argument for name, argument in store.calls if name == "fetch"] == [1, 1, 1]
    assert store.count("task_ids") == 1


async def test_run_once_waits_for_a_running_named_queue_before_it_gives_up() -> None:
    database = FakeDatabase()
    store = database.store("pool")
    head = database.add(queue_name="q")
    successor = database.add(queue_name="q")
    direct = source(store, continuous=False)
    running = await direct.get_job(None)
    assert running is not None
    assert running.id == head.id

    waiting = asyncio.ensure_future(direct.get_job(None))
    await store.called("fetch", 2)
    assert not waiting.done()
    await store.complete([running])
    direct.queues_released(1)

    taken = await waiting
    assert taken is not None
    assert taken.id == successor.id
    await store.complete([taken])
    direct.queues_released(1)
    assert await direct.get_job(None) is None


async def test_a_continuous_source_returns_none_when_nothing_is_runnable() -> None:
    database = FakeDatabase()
    store = database.store("pool")
    database.add(queue_name="q")
    database.add(queue_name="q")
    direct = source(store, continuous=True)

    assert await direct.get_job(None) is not None
    assert await direct.get_job(None) is None


async def test_a_released_source_hands_out_nothing() -> None:
    database = FakeDatabase()
    store = database.store("pool")
    database.add()
    direct = source(store, continuous=True)

    await direct.release()

    assert await direct.get_job(None) is None
    assert await direct.next_fetch() is None
    assert store.count("fetch") == 0
