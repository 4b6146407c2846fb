"""One set of expectations, run against the in-memory cron store of the unit tests
(``tests/_fakes/cron.py``) and the asyncpg store on PostgreSQL: what a due item adds,
backfilled minutes, the last execution recorded, and schedulers racing for one minute."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psycopg
import pytest

from sqlalchemy_graphile import JobSpec
from sqlalchemy_graphile._catalog import catalog_for
from sqlalchemy_graphile._store._asyncpg_cron import AsyncpgCronStore
from sqlalchemy_graphile._store._cron import CronStore, KnownCrontab
from sqlalchemy_graphile.events import CronJob
from tests._fakes.cron import FakeCronDatabase

REFERENCE = datetime(2021, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)

#: (task, run_at, payload) of every job cron added, oldest first.
Added = list[tuple[str, datetime, dict[str, Any]]]


@dataclass
class Backend:
    """Stores on one database, and what that database holds."""

    new_store: Callable[[], Awaitable[CronStore]]
    added: Callable[[], Added]

    async def store(self) -> CronStore:
        """Another store on the database (another scheduler's)."""
        return await self.new_store()


@pytest.fixture(params=["fake", "asyncpg"])
async def backend(
    request: pytest.FixtureRequest, db_url: str, db: psycopg.Connection
) -> AsyncIterator[Backend]:
    if request.param == "fake":
        database = FakeCronDatabase()

        async def fake_store() -> CronStore:
            return database.store()

        def fake_added() -> Added:
            return [(a.job.task, a.run_at, a.job.payload) for a in database.jobs]

        yield Backend(fake_store, fake_added)
        return
    async with AsyncExitStack() as stack:

        async def pg_store() -> CronStore:
            pool = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
            stack.push_async_callback(pool.close)
            return AsyncpgCronStore(pool, catalog_for("graphile_worker"))

        def pg_added() -> Added:
            return [
                (row[0], row[1], row[2])
                for row in db.execute(
                    "select t.identifier, j.run_at, j.payload"
                    " from graphile_worker._private_jobs j"
                    " join graphile_worker._private_tasks t on t.id = j.task_id order by j.id"
                ).fetchall()
            ]

        yield Backend(pg_store, pg_added)


def cron_job(identifier: str, tick: datetime, *, backfilled: bool = False) -> CronJob:
    payload = {"_cron": {"ts": tick.isoformat(), "backfilled": backfilled}, "n": 1}
    return CronJob(
        identifier=identifier,
        task=f"{identifier}_task",
        payload=payload,
        spec=JobSpec(run_at=tick, priority=2),
    )


async def test_remembered_items_are_known_and_never_executed(backend: Backend) -> None:
    store = await backend.store()
    assert await store.known_crontabs(["a", "b"]) == {}
    await store.remember(["a", "b"], REFERENCE)
    await store.remember(["a"], REFERENCE + MINUTE)  # already known: left as it is
    assert await store.known_crontabs(["a", "b", "c"]) == {
        "a": KnownCrontab("a", REFERENCE, None),
        "b": KnownCrontab("b", REFERENCE, None),
    }


async def test_a_due_item_adds_its_job_and_records_the_minute(backend: Backend) -> None:
    store = await backend.store()
    await store.remember(["a"], REFERENCE)
    tick = REFERENCE + 5 * MINUTE
    (job_id,) = await store.schedule([cron_job("a", tick)], tick)
    assert isinstance(job_id, int)
    assert backend.added() == [("a_task", tick, cron_job("a", tick).payload)]
    assert await store.known_crontabs(["a"]) == {"a": KnownCrontab("a", REFERENCE, tick)}


async def test_an_unknown_item_becomes_known_since_the_minute(backend: Backend) -> None:
    store = await backend.store()
    tick = REFERENCE + MINUTE
    assert len(await store.schedule([cron_job("new", tick)], tick)) == 1
    assert await store.known_crontabs(["new"]) == {"new": KnownCrontab("new", tick, tick)}


async def test_a_minute_is_added_once_and_never_before_the_last_execution(
    backend: Backend,
) -> None:
    store = await backend.store()
    tick = REFERENCE + 10 * MINUTE
    assert len(await store.schedule([cron_job("a", tick)], tick)) == 1
    assert await store.schedule([cron_job("a", tick)], tick) == []
    earlier = tick - MINUTE
    assert await store.schedule([cron_job("a", earlier, backfilled=True)], earlier) == []
    later = tick + MINUTE
    assert len(await store.schedule([cron_job("a", later)], later)) == 1
    assert [run_at for _, run_at, _ in backend.added()] == [tick, later]


async def test_backfilled_minutes_are_added_oldest_first(backend: Backend) -> None:
    store = await backend.store()
    await store.remember(["a", "b"], REFERENCE)
    ticks = [REFERENCE + n * MINUTE for n in (1, 2, 3)]
    for tick in ticks:
        jobs = [cron_job("a", tick, backfilled=True), cron_job("b", tick, backfilled=True)]
        assert len(await store.schedule(jobs, tick)) == 2
    added = backend.added()
    assert [(task, run_at) for task, run_at, _ in added] == [
        (task, tick) for tick in ticks for task in ("a_task", "b_task")
    ]
    assert all(payload["_cron"]["backfilled"] for _, _, payload in added)
    known = await store.known_crontabs(["a", "b"])
    assert {crontab.last_execution for crontab in known.values()} == {ticks[-1]}


async def test_racing_schedulers_add_each_item_once_per_minute(backend: Backend) -> None:
    stores = [await backend.store() for _ in range(3)]
    for minute in range(5):
        tick = REFERENCE + minute * MINUTE
        jobs = [cron_job("a", tick), cron_job("b", tick)]
        results = await asyncio.gather(*(store.schedule(jobs, tick) for store in stores))
        assert sum(len(ids) for ids in results) == 2
    added = backend.added()
    assert len(added) == 10
    assert len({(task, run_at) for task, run_at, _ in added}) == 10
