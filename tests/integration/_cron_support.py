"""A cron scheduler on the database, running on a clock the test moves by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psycopg

from sqlalchemy_graphile import CronEvent, CronItem, WorkerEvents, parse_crontab
from sqlalchemy_graphile._catalog import catalog_for
from sqlalchemy_graphile._store._asyncpg_cron import AsyncpgCronStore
from sqlalchemy_graphile.cron._scheduler import CronScheduler
from tests._fakes.cron import FakeClock

from ._worker_support import EventLog

#: 1st January 2021, 00:00:00 UTC.
REFERENCE = datetime(2021, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)


@dataclass
class RunningCron:
    scheduler: CronScheduler
    clock: FakeClock
    log: EventLog

    def events(self, name: str) -> list[CronEvent]:
        return [e for e in self.log.events if e.name == name and isinstance(e, CronEvent)]


@asynccontextmanager
async def running_cron(
    db_url: str, crontab: str | list[CronItem], clock: FakeClock, *, pool_id: str = "test-pool"
) -> AsyncIterator[RunningCron]:
    """A started scheduler on its own connection pool, once it has finished starting up and
    sleeps; stopped on exit."""
    items = parse_crontab(crontab) if isinstance(crontab, str) else crontab
    log = EventLog()
    events = WorkerEvents()
    events.on_any(log)
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    scheduler = CronScheduler(
        store=AsyncpgCronStore(pool, catalog_for("graphile_worker")),
        items=items,
        events=events,
        pool_id=pool_id,
        clock=clock,
    )
    try:
        scheduler.start()
        await log.wait_for("cron:started")
        await clock.settled()
        yield RunningCron(scheduler, clock, log)
    finally:
        await scheduler.stop()
        await pool.close()


def cron_jobs(db: psycopg.Connection) -> list[dict[str, Any]]:
    """Every job, oldest first, with its queue name and payload."""
    cursor = db.execute(
        "select j.id, t.identifier as task_identifier, q.queue_name, j.payload, j.priority,"
        " j.run_at, j.max_attempts, j.key, j.flags"
        " from graphile_worker._private_jobs j"
        " join graphile_worker._private_tasks t on t.id = j.task_id"
        " left join graphile_worker._private_job_queues q on q.id = j.job_queue_id"
        " order by j.id"
    )
    names = [c.name for c in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def known(db: psycopg.Connection) -> list[tuple[str, datetime, datetime | None]]:
    return [
        (row[0], row[1], row[2])
        for row in db.execute(
            "select identifier, known_since, last_execution"
            " from graphile_worker._private_known_crontabs order by identifier"
        ).fetchall()
    ]


def ts(when: datetime) -> str:
    """The ``_cron.ts`` text of a minute."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
