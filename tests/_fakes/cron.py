"""An in-memory cron store and a clock the test moves, for unit tests of the cron scheduler
without a database.

:class:`FakeCronDatabase` holds ``_private_known_crontabs`` and the jobs cron added;
:meth:`FakeCronDatabase.store` gives a :class:`FakeCronStore` on them, so that two stores on
one database play two schedulers. The store follows the
:class:`~sqlalchemy_graphile._store._cron.CronStore` protocol as the database does, and
``tests/integration/test_cron_store_contract.py`` holds it to the asyncpg store:

* an item is scheduled for a minute only if its last execution is unknown or earlier; the
  last execution then moves to that minute, and an item not known yet becomes known since
  it. Each :meth:`FakeCronStore.schedule` call is atomic (it never awaits in between);
* the job added has the minute as ``run_at`` and the cron job's task, payload and options.
  Job keys are recorded, not honoured (no job is replaced).

:attr:`FakeCronDatabase.failures` makes the next calls raise, as a database that refuses
them would, leaving the tables as they were.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy_graphile._store._cron import KnownCrontab
from sqlalchemy_graphile.events import CronJob


@dataclass(frozen=True)
class AddedJob:
    """A job cron added: its id, the minute (``run_at``) and the cron job."""

    id: int
    run_at: datetime
    job: CronJob


@dataclass
class FakeCronDatabase:
    """The tables a cron store reads and writes."""

    known: dict[str, KnownCrontab] = field(default_factory=dict)
    jobs: list[AddedJob] = field(default_factory=list)
    #: Errors the next calls raise, first one first.
    failures: list[Exception] = field(default_factory=list)

    def store(self) -> FakeCronStore:
        return FakeCronStore(self)

    def fail_if_asked(self) -> None:
        if self.failures:
            raise self.failures.pop(0)


class FakeCronStore:
    """A :class:`~sqlalchemy_graphile._store._cron.CronStore` on ``database``."""

    def __init__(self, database: FakeCronDatabase) -> None:
        self.database = database

    async def known_crontabs(self, identifiers: Sequence[str]) -> dict[str, KnownCrontab]:
        await asyncio.sleep(0)
        self.database.fail_if_asked()
        known = self.database.known
        return {name: known[name] for name in identifiers if name in known}

    async def remember(self, identifiers: Sequence[str], known_since: datetime) -> None:
        await asyncio.sleep(0)
        self.database.fail_if_asked()
        for name in identifiers:
            self.database.known.setdefault(name, KnownCrontab(name, known_since, None))

    async def schedule(self, jobs: Sequence[CronJob], tick: datetime) -> list[int]:
        await asyncio.sleep(0)
        self.database.fail_if_asked()
        database = self.database
        added: list[int] = []
        for job in jobs:
            known = database.known.get(job.identifier)
            last = None if known is None else known.last_execution
            if last is not None and last >= tick:
                continue
            since = known.known_since if known is not None else tick
            database.known[job.identifier] = KnownCrontab(job.identifier, since, tick)
            new = AddedJob(len(database.jobs) + 1, tick, job)
            database.jobs.append(new)
            added.append(new.id)
        return added


class FakeClock:
    """A clock for the scheduler, moved by the test.

    ``now()`` reads the wall clock. ``sleep()`` waits on a separate elapsed-time line that
    only moves forward, as ``asyncio.sleep`` does: setting the wall clock back wakes no one.
    """

    def __init__(self, now: datetime) -> None:
        self._wall = now
        self._elapsed = timedelta(0)
        self._sleepers: list[tuple[timedelta, asyncio.Future[None]]] = []
        self._asleep = asyncio.Event()

    def now(self) -> datetime:
        return self._wall

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        entry = (
            self._elapsed + timedelta(seconds=seconds),
            asyncio.get_running_loop().create_future(),
        )
        self._sleepers.append(entry)
        self._asleep.set()
        try:
            await entry[1]
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)

    async def set_time(self, when: datetime) -> None:
        """Move the wall clock to ``when``. Forward, time passes: each timer due on the way
        fires at its own time, and the scheduler settles before the next one. Backward, only
        the wall clock changes."""
        if when <= self._wall:
            self._wall = when
            return
        target = self._elapsed + (when - self._wall)
        while True:
            due = min((deadline for deadline, _ in self._sleepers), default=None)
            if due is None or due > target:
                break
            self._wall += due - self._elapsed
            self._elapsed = due
            self._wake()
            await self.settled()
        self._wall = when
        self._elapsed = target

    def jump(self, when: datetime) -> None:
        """Set the wall clock to ``when`` without any time passing (a clock step)."""
        self._wall = when

    async def settled(self, within: float = 15.0) -> None:
        """Wait until the scheduler sleeps again, waiting for a later time."""
        async with asyncio.timeout(within):
            await self._asleep.wait()

    def _wake(self) -> None:
        due = [entry for entry in self._sleepers if entry[0] <= self._elapsed]
        if due:
            self._asleep.clear()
        for entry in due:
            self._sleepers.remove(entry)
            if not entry[1].done():
                entry[1].set_result(None)
