"""The cron scheduler on an in-memory cron store and a clock the test moves: what it asks
the store for at start-up, every minute, after the clock moved, and after an error.

``tests/integration/test_cron_scheduler.py`` runs the scheduler on PostgreSQL;
``tests/integration/test_cron_store_contract.py`` holds the in-memory store to the real one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from sqlalchemy_graphile import CronEvent, WorkerEvent, WorkerEvents, parse_crontab
from sqlalchemy_graphile._store._cron import KnownCrontab
from sqlalchemy_graphile.cron._scheduler import CronScheduler
from tests._fakes.cron import FakeClock, FakeCronDatabase

REFERENCE = datetime(2021, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)


class CronLog:
    """The scheduler's events, which a test can await."""

    def __init__(self) -> None:
        self.events: list[CronEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: WorkerEvent) -> None:
        assert isinstance(event, CronEvent)
        self.events.append(event)
        self._changed.set()

    def named(self, name: str) -> list[CronEvent]:
        return [event for event in self.events if event.name == name]

    async def wait_for(self, name: str, count: int = 1) -> None:
        async with asyncio.timeout(15):
            while len(self.named(name)) < count:
                self._changed.clear()
                await self._changed.wait()


@dataclass
class Running:
    scheduler: CronScheduler
    clock: FakeClock
    log: CronLog


@asynccontextmanager
async def running(
    database: FakeCronDatabase, crontab: str, clock: FakeClock
) -> AsyncIterator[Running]:
    """A started scheduler on ``database``, once it has started up and sleeps."""
    log = CronLog()
    events = WorkerEvents()
    events.on_any(log)
    scheduler = CronScheduler(
        store=database.store(),
        items=parse_crontab(crontab),
        events=events,
        pool_id="p",
        clock=clock,
    )
    scheduler.start()
    try:
        await log.wait_for("cron:started")
        await clock.settled()
        yield Running(scheduler, clock, log)
    finally:
        await scheduler.stop()


async def test_new_items_become_known_since_the_start_and_are_not_backfilled() -> None:
    database = FakeCronDatabase()
    start = REFERENCE + 10 * HOUR + 30 * MINUTE
    async with running(database, "0 */4 * * * do_it ?fill=1d", FakeClock(start)) as cron:
        assert cron.log.named("cron:backfill") == []
    assert database.known == {"do_it": KnownCrontab("do_it", start, None)}
    assert database.jobs == []


async def test_a_matching_minute_adds_its_job_and_records_the_execution() -> None:
    database = FakeCronDatabase()
    clock = FakeClock(REFERENCE + HOUR)
    async with running(database, "0 */4 * * * my_task ?priority=3", clock) as cron:
        await clock.set_time(REFERENCE + 3 * HOUR + SECOND)
        assert database.jobs == []
        await clock.set_time(REFERENCE + 4 * HOUR + SECOND)
        assert [e.timestamp for e in cron.log.named("cron:scheduled")] == [REFERENCE + 4 * HOUR]
    (added,) = database.jobs
    assert added.run_at == added.job.spec.run_at == REFERENCE + 4 * HOUR
    assert (added.job.task, added.job.spec.priority) == ("my_task", 3)
    assert added.job.payload == {"_cron": {"ts": "2021-01-01T04:00:00.000Z", "backfilled": False}}
    assert database.known["my_task"].last_execution == REFERENCE + 4 * HOUR


@pytest.mark.parametrize(
    ("start", "lag", "expected"),
    [
        (REFERENCE + 10 * HOUR + 30 * MINUTE, 5 * HOUR, [8]),
        (REFERENCE + 8 * HOUR + 30 * SECOND, 5 * HOUR, [4, 8]),
        (REFERENCE + 8 * HOUR, 5 * HOUR, [4]),  # 8:00 itself is the main loop's
        (REFERENCE + 34 * HOUR + 30 * MINUTE, 25 * HOUR, [12, 16, 20, 24, 28, 32]),
    ],
)
async def test_a_known_item_is_backfilled_oldest_first_within_its_period(
    start: datetime, lag: timedelta, expected: list[int]
) -> None:
    database = FakeCronDatabase()
    database.known["do_it"] = KnownCrontab("do_it", start - timedelta(days=14), start - lag)
    async with running(database, "0 */4 * * * do_it ?fill=1d", FakeClock(start)) as cron:
        backfills = [e.timestamp for e in cron.log.named("cron:backfill")]
    ticks = [REFERENCE + hours * HOUR for hours in expected]
    assert backfills == ticks
    assert [added.run_at for added in database.jobs] == ticks
    assert all(added.job.payload["_cron"]["backfilled"] for added in database.jobs)
    assert database.known["do_it"].last_execution == ticks[-1]


async def test_a_clock_set_back_adds_no_second_job_for_a_minute() -> None:
    database = FakeCronDatabase()
    clock = FakeClock(REFERENCE + HOUR)
    async with running(database, "0 */4 * * * my_task", clock) as cron:
        await clock.set_time(REFERENCE + 4 * HOUR + SECOND)
        await clock.set_time(REFERENCE + 3 * HOUR + SECOND)  # the clock goes back an hour
        await clock.set_time(REFERENCE + 4 * HOUR + SECOND)  # and forward again
        (premature,) = cron.log.named("cron:prematureTimer")
        assert premature.timestamp == REFERENCE + 4 * HOUR + MINUTE
    assert [added.run_at for added in database.jobs] == [REFERENCE + 4 * HOUR]


async def test_a_late_timer_catches_up_every_missed_minute_as_not_backfilled() -> None:
    database = FakeCronDatabase()
    clock = FakeClock(REFERENCE + HOUR + 30 * SECOND)
    async with running(database, "* * * * * tick", clock) as cron:
        clock.jump(REFERENCE + HOUR + 5 * MINUTE + 10 * SECOND)  # the clock steps forward
        await clock.set_time(REFERENCE + HOUR + 5 * MINUTE + 41 * SECOND)  # the timer fires
        overdue = [e.timestamp for e in cron.log.named("cron:overdueTimer")]
    assert overdue == [REFERENCE + HOUR + n * MINUTE for n in (1, 2, 3, 4)]
    assert [added.run_at for added in database.jobs] == [
        REFERENCE + HOUR + n * MINUTE for n in range(1, 6)
    ]
    assert not any(added.job.payload["_cron"]["backfilled"] for added in database.jobs)


async def test_an_error_restarts_the_scheduler_and_backfill_adds_the_lost_minute() -> None:
    database = FakeCronDatabase()
    database.known["hourly"] = KnownCrontab("hourly", REFERENCE, REFERENCE + 3 * HOUR)
    clock = FakeClock(REFERENCE + 3 * HOUR + 59 * MINUTE)
    async with running(database, "0 * * * * hourly ?fill=1h", clock) as cron:
        database.failures.append(ConnectionResetError("the database went away"))
        await clock.set_time(REFERENCE + 4 * HOUR + SECOND)
        await cron.log.wait_for("cron:started", 2)
        assert cron.log.named("cron:backfill")[-1].timestamp == REFERENCE + 4 * HOUR
    (added,) = database.jobs
    assert added.run_at == REFERENCE + 4 * HOUR
    assert added.job.payload["_cron"] == {"ts": "2021-01-01T04:00:00.000Z", "backfilled": True}


async def test_schedulers_sharing_a_store_add_each_minute_once() -> None:
    database = FakeCronDatabase()
    items = parse_crontab("* * * * * tick\n* * * * * tock")
    schedulers = [
        CronScheduler(
            store=database.store(),
            items=items,
            events=WorkerEvents(),
            pool_id=f"p{n}",
            clock=FakeClock(REFERENCE),
        )
        for n in range(3)
    ]
    for minute in range(5):
        tick = REFERENCE + minute * MINUTE
        results = await asyncio.gather(*(s.schedule(items, tick) for s in schedulers))
        assert sum(len(ids) for ids in results) == 2
    assert len({(added.job.identifier, added.run_at) for added in database.jobs}) == 10


async def test_start_up_reads_and_records_through_the_store() -> None:
    database = FakeCronDatabase()
    database.known["old"] = KnownCrontab("old", REFERENCE - HOUR, None)
    scheduler = CronScheduler(
        store=database.store(),
        items=parse_crontab("0 0 * * * old\n0 0 * * * new"),
        events=WorkerEvents(),
        pool_id="p",
        clock=FakeClock(REFERENCE),
    )
    assert await scheduler.start_up() == REFERENCE
    assert database.known == {
        "old": KnownCrontab("old", REFERENCE - HOUR, None),
        "new": KnownCrontab("new", REFERENCE, None),
    }
