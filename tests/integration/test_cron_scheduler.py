"""The cron scheduler on a real database with a clock the test moves: when jobs are added,
clock changes, backfill, job keys, several schedulers on one database, and restarts."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import datetime, timedelta

import asyncpg
import psycopg
import pytest

from sqlalchemy_graphile import CronItem, CronItemOptions, JobKeyMode, WorkerEvents, parse_crontab
from sqlalchemy_graphile._catalog import catalog_for
from sqlalchemy_graphile._store._asyncpg_cron import AsyncpgCronStore
from sqlalchemy_graphile.cron._scheduler import CronScheduler
from tests._fakes.cron import FakeClock

from ._cron_support import (
    HOUR,
    MINUTE,
    REFERENCE,
    SECOND,
    cron_jobs,
    known,
    running_cron,
    ts,
)
from ._worker_support import eventually, logged

EVERY_FOUR_HOURS = "0 */4 * * * my_task"


async def test_executes_job_when_expected(db_url: str, db: psycopg.Connection) -> None:
    clock = FakeClock(REFERENCE + HOUR)  # 1am
    async with running_cron(db_url, EVERY_FOUR_HOURS, clock) as cron:
        assert cron.events("cron:schedule") == []

        await clock.set_time(REFERENCE + 3 * HOUR + SECOND)  # 3:00:01am
        assert cron.events("cron:schedule") == []
        assert cron_jobs(db) == []

        await clock.set_time(REFERENCE + 4 * HOUR + SECOND)  # 4:00:01am
        (schedule,) = cron.events("cron:schedule")
        assert schedule.timestamp == REFERENCE + 4 * HOUR
        assert [(job.identifier, job.task) for job in schedule.jobs] == [("my_task", "my_task")]
        (scheduled,) = cron.events("cron:scheduled")
        assert scheduled.jobs == schedule.jobs
        # Time passed timer by timer: never early, never late.
        assert cron.events("cron:prematureTimer") == cron.events("cron:overdueTimer") == []

    (job,) = cron_jobs(db)
    assert job["task_identifier"] == "my_task"
    assert job["run_at"] == REFERENCE + 4 * HOUR
    assert job["payload"] == {"_cron": {"ts": "2021-01-01T04:00:00.000Z", "backfilled": False}}
    assert (job["queue_name"], job["key"], job["flags"]) == (None, None, None)
    assert (job["priority"], job["max_attempts"]) == (0, 25)
    assert known(db) == [("my_task", REFERENCE + HOUR, REFERENCE + 4 * HOUR)]


async def test_does_not_schedule_twice_when_the_clock_goes_back(
    db_url: str, db: psycopg.Connection
) -> None:
    clock = FakeClock(REFERENCE + HOUR)
    async with running_cron(db_url, EVERY_FOUR_HOURS, clock) as cron:
        await clock.set_time(REFERENCE + 3 * HOUR + SECOND)
        await clock.set_time(REFERENCE + 4 * HOUR + SECOND)
        assert len(cron.events("cron:schedule")) == 1

        await clock.set_time(REFERENCE + 3 * HOUR + SECOND)  # the clock goes back an hour
        await clock.set_time(REFERENCE + 4 * HOUR + SECOND)  # and forward again
        assert len(cron.events("cron:schedule")) == 1
        # The timer set for 4:01 fired while the clock read 3:01: too early, set again.
        (premature,) = cron.events("cron:prematureTimer")
        assert premature.timestamp == REFERENCE + 4 * HOUR + MINUTE
        assert premature.current is not None
        assert premature.current < REFERENCE + 3 * HOUR + 2 * MINUTE
    assert len(cron_jobs(db)) == 1


async def test_clock_skew_does_not_prevent_scheduling_at_the_right_time(
    db_url: str, db: psycopg.Connection
) -> None:
    clock = FakeClock(REFERENCE + HOUR)
    async with running_cron(db_url, EVERY_FOUR_HOURS, clock) as cron:
        await clock.set_time(REFERENCE + 3 * HOUR + SECOND)
        await clock.set_time(REFERENCE + 4 * HOUR - 30 * SECOND)  # 3:59:30am
        for _ in range(10):
            await clock.set_time(REFERENCE + 4 * HOUR - MINUTE)  # 3:59:00am
            assert cron.events("cron:schedule") == []
            await clock.set_time(REFERENCE + 4 * HOUR - 30 * SECOND)  # 3:59:30am
            assert cron.events("cron:schedule") == []
        assert cron.events("cron:prematureTimer")

        await clock.set_time(REFERENCE + 4 * HOUR + SECOND)
        (schedule,) = cron.events("cron:schedule")
        assert schedule.timestamp == REFERENCE + 4 * HOUR
    assert [job["run_at"] for job in cron_jobs(db)] == [REFERENCE + 4 * HOUR]


async def test_a_job_key_updates_the_pending_job_in_place(
    db_url: str, db: psycopg.Connection
) -> None:
    clock = FakeClock(REFERENCE + HOUR)
    async with running_cron(db_url, "0 */4 * * * my_task ?jobKey=foo", clock) as cron:
        await clock.set_time(REFERENCE + 4 * HOUR + SECOND)
        assert len(cron.events("cron:schedule")) == 1
        (first,) = cron_jobs(db)
        assert (first["task_identifier"], first["key"]) == ("my_task", "foo")
        assert first["payload"]["_cron"]["ts"] == "2021-01-01T04:00:00.000Z"

        await clock.set_time(REFERENCE + 8 * HOUR + SECOND)
        assert len(cron.events("cron:schedule")) == 2
        (second,) = cron_jobs(db)
        assert second["id"] == first["id"]
        assert (second["task_identifier"], second["key"]) == ("my_task", "foo")
        assert second["payload"]["_cron"]["ts"] == "2021-01-01T08:00:00.000Z"
        assert second["run_at"] == REFERENCE + 8 * HOUR


async def test_preserve_run_at_keeps_the_first_pending_minute(
    db_url: str, db: psycopg.Connection
) -> None:
    clock = FakeClock(REFERENCE + HOUR)
    crontab = "0 */4 * * * my_task ?jobKey=foo&jobKeyMode=preserve_run_at"
    async with running_cron(db_url, crontab, clock):
        await clock.set_time(REFERENCE + 8 * HOUR + SECOND)
    (job,) = cron_jobs(db)
    assert job["run_at"] == REFERENCE + 4 * HOUR
    assert job["payload"]["_cron"]["ts"] == "2021-01-01T08:00:00.000Z"


async def test_registers_new_identifiers_without_backfilling_them(
    db_url: str, db: psycopg.Connection
) -> None:
    assert known(db) == []
    clock = FakeClock(REFERENCE + 10 * HOUR + 30 * MINUTE)
    async with running_cron(db_url, "0 */4 * * * do_it ?fill=1d", clock) as cron:
        (starting,) = cron.events("cron:starting")
        (started,) = cron.events("cron:started")
        assert starting.start == started.start == REFERENCE + 10 * HOUR + 30 * MINUTE
        assert cron.events("cron:backfill") == []
    assert known(db) == [("do_it", REFERENCE + 10 * HOUR + 30 * MINUTE, None)]
    assert cron_jobs(db) == []


@pytest.mark.parametrize(
    ("start", "lag", "expected"),
    [
        # 5 hours behind, every 4 hours: the ticks since the last execution, within a day.
        (REFERENCE + 10 * HOUR + 30 * MINUTE, 5 * HOUR, [8]),
        (REFERENCE + 8 * HOUR + 30 * SECOND, 5 * HOUR, [4, 8]),
        (REFERENCE + 8 * HOUR, 5 * HOUR, [4]),  # 8:00 itself is the main loop's
        # 25 hours behind: only the last day is filled.
        (REFERENCE + 34 * HOUR + 30 * MINUTE, 25 * HOUR, [12, 16, 20, 24, 28, 32]),
        (REFERENCE + 32 * HOUR + 30 * SECOND, 25 * HOUR, [12, 16, 20, 24, 28, 32]),
    ],
)
async def test_backfills_an_identifier_already_registered(
    db_url: str, db: psycopg.Connection, start: datetime, lag: timedelta, expected: list[int]
) -> None:
    db.execute(
        "insert into graphile_worker._private_known_crontabs values ('do_it', %s, %s)",
        (start - timedelta(days=14), start - lag),
    )
    async with running_cron(db_url, "0 */4 * * * do_it ?fill=1d", FakeClock(start)) as cron:
        backfills = cron.events("cron:backfill")
    ticks = [REFERENCE + hours * HOUR for hours in expected]
    assert [e.timestamp for e in backfills] == ticks
    jobs = cron_jobs(db)
    assert [job["run_at"] for job in jobs] == ticks
    assert [job["payload"]["_cron"] for job in jobs] == [
        {"ts": ts(tick), "backfilled": True} for tick in ticks
    ]
    assert {job["task_identifier"] for job in jobs} == {"do_it"}
    assert known(db)[0][2] == ticks[-1]


async def test_each_item_backfills_within_its_own_period(
    db_url: str, db: psycopg.Connection
) -> None:
    start = REFERENCE + 10 * HOUR + 5 * MINUTE
    db.execute(
        "insert into graphile_worker._private_known_crontabs values"
        " ('short', %(long_ago)s, null), ('long', %(long_ago)s, null),"
        " ('recent', %(recent)s, null), ('none', %(long_ago)s, null)",
        {"long_ago": start - timedelta(days=3), "recent": start - 45 * MINUTE},
    )
    crontab = "\n".join(
        [
            "*/30 * * * * t ?id=short&fill=1h",
            "*/30 * * * * t ?id=long&fill=3h",
            "*/30 * * * * t ?id=recent&fill=3h",  # known since 9:20
            "*/30 * * * * t ?id=none",
        ]
    )
    async with running_cron(db_url, crontab, FakeClock(start)):
        pass
    runs = [
        (row[0], row[1])
        for row in db.execute(
            "select identifier, last_execution from graphile_worker._private_known_crontabs"
            " order by identifier"
        ).fetchall()
    ]
    assert runs == [
        ("long", REFERENCE + 10 * HOUR),
        ("none", None),
        ("recent", REFERENCE + 10 * HOUR),
        ("short", REFERENCE + 10 * HOUR),
    ]
    ticks = sorted(job["run_at"] for job in cron_jobs(db))
    half_hours = [REFERENCE + 7 * HOUR + n * 30 * MINUTE for n in range(7)]  # 7:30 ... 10:00
    last_two = half_hours[-2:]
    # long: since 7:05; recent: since 9:20 (when it became known); short: since 9:05
    expected = sorted([*half_hours[1:], *last_two, *last_two])
    assert ticks == expected


async def test_a_late_timer_catches_up_every_missed_minute(
    db_url: str, db: psycopg.Connection
) -> None:
    clock = FakeClock(REFERENCE + HOUR + 30 * SECOND)
    async with running_cron(db_url, "* * * * * tick", clock) as cron:
        clock.jump(REFERENCE + HOUR + 5 * MINUTE + 10 * SECOND)  # the clock steps forward
        await clock.set_time(REFERENCE + HOUR + 5 * MINUTE + 41 * SECOND)  # the timer fires
        overdue = cron.events("cron:overdueTimer")
        # Each missed minute is late; the fifth is the current one.
        assert [e.timestamp for e in overdue] == [
            REFERENCE + HOUR + n * MINUTE for n in (1, 2, 3, 4)
        ]
        assert {e.current for e in overdue} == {REFERENCE + HOUR + 5 * MINUTE + 40.001 * SECOND}
        scheduled = [e.timestamp for e in cron.events("cron:scheduled")]
    ticks = [REFERENCE + HOUR + n * MINUTE for n in range(1, 6)]
    assert scheduled == ticks
    jobs = cron_jobs(db)
    assert [job["run_at"] for job in jobs] == ticks
    assert not any(job["payload"]["_cron"]["backfilled"] for job in jobs)


async def test_job_options_and_payload_reach_the_job(db_url: str, db: psycopg.Connection) -> None:
    items = [
        *parse_crontab(
            "0 * * * * report ?id=hourly&max=3&queue=reports&priority=-2&jobKey=r1 "
            "{kind: 'hourly', _cron: 'replaced'}"
        ),
        CronItem(
            task="sync",
            match=lambda digest: digest.hour == 2,
            options=CronItemOptions(
                queue_name="sync", job_key="s1", job_key_mode=JobKeyMode.PRESERVE_RUN_AT
            ),
            payload={"full": True},
        ),
    ]
    clock = FakeClock(REFERENCE + HOUR + 59 * MINUTE)
    async with running_cron(db_url, items, clock) as cron:
        await clock.set_time(REFERENCE + 2 * HOUR + SECOND)
        (schedule,) = cron.events("cron:schedule")
        assert [job.identifier for job in schedule.jobs] == ["hourly", "sync"]
        assert schedule.jobs[0].spec.run_at == REFERENCE + 2 * HOUR
    report, sync = cron_jobs(db)
    cron_key = {"ts": "2021-01-01T02:00:00.000Z", "backfilled": False}
    assert report["payload"] == {"kind": "hourly", "_cron": cron_key}
    assert list(report["payload"]) == ["kind", "_cron"]
    assert (report["queue_name"], report["max_attempts"], report["priority"]) == ("reports", 3, -2)
    assert (report["key"], report["flags"]) == ("r1", None)
    assert sync["payload"] == {"full": True, "_cron": cron_key}
    assert (sync["task_identifier"], sync["queue_name"], sync["key"]) == ("sync", "sync", "s1")


@pytest.mark.parametrize(
    ("skews", "minutes", "attempts"),
    [
        # Clocks less than a minute apart: the first to reach a minute adds its job, the
        # others find it taken. Every minute gets exactly one job.
        ((0, 20), range(1, 11), 2 * 10),
        # A clock 90 s ahead adds 1:02 before the others reach 1:01. last_execution only
        # moves forward, so 1:01 is skipped: at most one job per minute, never two.
        ((0, 20, 90), range(2, 12), 3 * 10),
    ],
)
async def test_schedulers_with_skewed_clocks_add_each_minute_at_most_once(
    db_url: str, db: psycopg.Connection, skews: tuple[int, ...], minutes: range, attempts: int
) -> None:
    start = REFERENCE + HOUR + 5 * SECOND
    clocks = [FakeClock(start + skew * SECOND) for skew in skews]
    async with AsyncExitStack() as stack:
        crons = [
            await stack.enter_async_context(
                running_cron(db_url, "* * * * * tick", clock, pool_id=f"p{n}")
            )
            for n, clock in enumerate(clocks)
        ]
        for step in range(1, 61):  # ten minutes, ten seconds at a time
            for clock, skew in zip(clocks, skews, strict=True):
                await clock.set_time(start + (step * 10 + skew) * SECOND)
        tried = sum(len(cron.events("cron:scheduled")) for cron in crons)
    ticks = [job["run_at"] for job in cron_jobs(db)]
    assert ticks == [REFERENCE + HOUR + n * MINUTE for n in minutes]
    assert [job["payload"]["_cron"]["ts"] for job in cron_jobs(db)] == [ts(t) for t in ticks]
    assert tried == attempts


async def test_concurrent_statements_add_one_job_per_minute(
    db_url: str, db: psycopg.Connection
) -> None:
    items = parse_crontab("* * * * * tick\n* * * * * tock")
    pools = [await asyncpg.create_pool(db_url, min_size=1, max_size=1) for _ in range(3)]
    schedulers = [
        CronScheduler(
            store=AsyncpgCronStore(pool, catalog_for("graphile_worker")),
            items=items,
            events=WorkerEvents(),
            pool_id=f"p{n}",
            clock=FakeClock(REFERENCE),
        )
        for n, pool in enumerate(pools)
    ]
    try:
        added: list[int] = []
        for minute in range(20):
            tick = REFERENCE + minute * MINUTE
            results = await asyncio.gather(*(s.schedule(items, tick) for s in schedulers))
            assert sorted(len(ids) for ids in results) in ([0, 0, 2], [0, 1, 1])
            added += [job_id for ids in results for job_id in ids]
    finally:
        for pool in pools:
            await pool.close()
    jobs = cron_jobs(db)
    assert sorted(added) == [job["id"] for job in jobs]
    assert len(jobs) == 40
    assert len({(job["task_identifier"], job["run_at"]) for job in jobs}) == 40


async def test_an_error_restarts_cron_and_backfill_recovers_the_minute(
    db_url: str, db: psycopg.Connection
) -> None:
    db.execute(
        "create function public.refuse_jobs() returns trigger language plpgsql as"
        " $$ begin raise exception 'no jobs today'; end $$"
    )
    db.execute(
        "create trigger refuse before insert on graphile_worker._private_jobs"
        " for each row execute function public.refuse_jobs()"
    )
    clock = FakeClock(REFERENCE + 3 * HOUR + 59 * MINUTE)
    async with running_cron(db_url, "0 * * * * hourly ?fill=1h", clock) as cron:
        clock_step = asyncio.create_task(clock.set_time(REFERENCE + 4 * HOUR + SECOND))
        # The statement fails, and nothing of it stays: last_execution is not moved.
        await cron.log.wait_for("cron:starting", 3)
        assert known(db) == [("hourly", REFERENCE + 3 * HOUR + 59 * MINUTE, None)]
        db.execute("drop trigger refuse on graphile_worker._private_jobs")
        await clock_step
        await eventually(lambda: cron_jobs(db))
        assert cron.events("cron:backfill")[-1].timestamp == REFERENCE + 4 * HOUR
    (job,) = cron_jobs(db)
    assert job["payload"]["_cron"] == {"ts": "2021-01-01T04:00:00.000Z", "backfilled": True}
    assert known(db)[0][2] == REFERENCE + 4 * HOUR


async def test_stop_interrupts_the_wait_and_start_up_reports_the_start(
    db_url: str, db: psycopg.Connection
) -> None:
    events, log = logged()
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
    clock = FakeClock(REFERENCE)
    scheduler = CronScheduler(
        store=AsyncpgCronStore(pool, catalog_for("graphile_worker")),
        items=parse_crontab("0 0 * * * daily"),
        events=events,
        pool_id="p",
        clock=clock,
    )
    try:
        assert await scheduler.start_up() == REFERENCE
        assert log.names() == ["cron:starting", "cron:started"]
        scheduler.start()
        await log.wait_for("cron:started", 2)
        await clock.settled()
        async with asyncio.timeout(5):
            await scheduler.stop()
        await scheduler.stop()  # a second stop is a no-op
    finally:
        await pool.close()
    assert [e.pool_id for e in log.events] == ["p"] * 4
    assert cron_jobs(db) == []
