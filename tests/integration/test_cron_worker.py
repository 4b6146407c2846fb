"""Cron in a running worker, on the real clock: registration, backfill after downtime, jobs
run by the worker, and no cron in ``run_once``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import psycopg
import pytest
from pydantic import Field

from sqlalchemy_graphile import (
    CronEvent,
    CronItem,
    CronItemOptions,
    Task,
    WorkerContext,
)

from ._cron_support import cron_jobs, known
from ._worker_support import Job2, Recorder, eventually, logged, make_worker, recorder

FOUR_HOURS = timedelta(hours=4)
CRONTAB_DO_IT = "\n0 */4 * * * do_it ?fill=1d\n"  # the worker has no do_it task


class Tick(Task):
    IDENTIFIER: ClassVar[str] = "tick"
    cron: dict[str, Any] = Field(alias="_cron")

    async def run(self, ctx: WorkerContext) -> None:
        recorder(ctx).calls.append(("tick", self.cron))


def not_within_the_test(now: datetime) -> str:
    """A daily time pattern twelve hours away from ``now``."""
    return f"0 {(now.hour + 12) % 24} * * *"


async def test_registers_identifiers(db_url: str, db: psycopg.Connection) -> None:
    assert known(db) == []
    before = datetime.now(UTC)
    events, log = logged()
    crontab = f"{not_within_the_test(before)} do_it ?fill=1d"
    async with make_worker(db_url, Job2, crontab=crontab, events=events) as worker:
        started = await log.wait_for("cron:started")
        assert isinstance(started, CronEvent)
        assert started.pool_id == worker.pool_id
        assert started.start is not None
        assert before <= started.start <= datetime.now(UTC)
    ((identifier, known_since, last_execution),) = known(db)
    assert (identifier, last_execution) == ("do_it", None)
    assert known_since == started.start
    assert cron_jobs(db) == []
    assert log.names().index("cron:starting") < log.names().index("cron:started")


def _four_hour_boundary(when: datetime) -> datetime:
    return when.replace(hour=when.hour - when.hour % 4, minute=0, second=0, microsecond=0)


@pytest.mark.parametrize(("lag", "fewest", "most"), [("5 hours", 1, 2), ("25 hours", 6, 7)])
async def test_backfills_if_identifier_already_registered(
    db_url: str, db: psycopg.Connection, lag: str, fewest: int, most: int
) -> None:
    expected = _four_hour_boundary(datetime.now(UTC))
    db.execute(
        "insert into graphile_worker._private_known_crontabs"
        " (identifier, known_since, last_execution)"
        f" values ('do_it', now() - interval '14 days', now() - interval '{lag}')"
    )
    events, log = logged()
    async with make_worker(db_url, Job2, crontab=CRONTAB_DO_IT, events=events):
        await log.wait_for("cron:started")
    ((identifier, _known_since, last_execution),) = known(db)
    assert identifier == "do_it"
    # The run may cross a four-hour boundary: then the next one is the last execution.
    assert last_execution in (expected, expected + FOUR_HOURS)
    jobs = cron_jobs(db)
    assert fewest <= len(jobs) <= most
    assert {job["task_identifier"] for job in jobs} == {"do_it"}
    assert all(job["payload"]["_cron"]["backfilled"] for job in jobs[:fewest])


async def test_the_worker_runs_the_jobs_it_scheduled(db_url: str, db: psycopg.Connection) -> None:
    db.execute(
        "insert into graphile_worker._private_known_crontabs"
        " values ('tick', now() - interval '1 day', now() - interval '150 seconds')"
    )
    rec = Recorder()
    item = CronItem(
        task="tick",
        match="* * * * *",
        options=CronItemOptions(backfill_period=timedelta(minutes=2)),
        payload={"note": "ignored by Tick"},
    )
    async with make_worker(db_url, Tick, rec=rec, crontab=[item]):
        # The two minutes before the worker started are backfilled.
        await eventually(lambda: len(rec.seen("tick")) >= 2)
    backfilled = [cron for cron in rec.seen("tick") if cron["backfilled"]]
    assert len(backfilled) == 2
    first, second = (datetime.fromisoformat(cron["ts"]) for cron in backfilled)
    assert second - first == timedelta(minutes=1)
    assert all(cron["ts"].endswith(":00.000Z") for cron in backfilled)


async def test_run_once_does_not_schedule(db_url: str, db: psycopg.Connection) -> None:
    events, log = logged()
    worker = make_worker(db_url, Job2, crontab="* * * * * job2 ?fill=1h", events=events)
    await worker.run_once()
    assert known(db) == []
    assert not [name for name in log.names() if name.startswith("cron:")]
