"""The cron scheduler: adds the jobs of cron items, minute by minute, as Graphile Worker's
cron does (https://worker.graphile.org/docs/cron).

**Start-up.** Read which items ``_private_known_crontabs`` knows. Record the new ones as
known since now; they are never backfilled. Then walk the minutes of the largest backfill
period up to now, oldest first, and add the jobs of known items whose own period covers
the minute, that match it and that were not scheduled at or after it.

**Then, every minute.** Sleep until just after the next minute starts. If the clock says
it is still an earlier minute (it was set back), sleep again; if it is already a later one
(the machine was suspended, or the clock jumped), catch up on every missed minute at once
(those jobs are not marked as backfilled). Add the jobs of the items matching the minute.

**Adding jobs** is one statement per minute, which moves each item's ``last_execution`` to
the minute only if it was earlier, and calls ``add_job`` for exactly those items, with
``run_at`` = the minute. So each item gets at most one job per minute, however many
workers run the same crontab and however their clocks differ.

Any error restarts the whole scheduler (start-up included, so a lost minute is backfilled
when the item's period covers it) after a jittered exponential delay of 200 ms x 1.5^n,
at most 60 s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from .._aio import wait_event
from .._backoff import Backoff
from .._store._cron import CronStore
from ..events import CronEvent, CronJob, WorkerEvents
from ..job_spec import JobSpec
from ._clock import Clock, SystemClock
from ._items import CronItem

logger = logging.getLogger("sqlalchemy_graphile.cron")

#: Delays before restarting after an error.
RESTART_BACKOFF = Backoff(0.2, 60.0, multiplier=1.5)
#: How long :meth:`CronScheduler.stop` lets a statement in progress finish.
STOP_TIMEOUT = 5.0

_MINUTE = timedelta(minutes=1)
# The timer aims this far past the minute, so that it never fires at the end of the last one.
_PAST_THE_MINUTE = 0.001


class CronScheduler:
    """Schedules ``items`` through ``store`` between :meth:`start` and :meth:`stop`.

    Every call to the store is atomic and its own transaction, outside any transaction of
    the caller. Events go to ``events`` with ``pool_id``.
    """

    def __init__(
        self,
        *,
        store: CronStore,
        items: Sequence[CronItem],
        events: WorkerEvents,
        pool_id: str,
        clock: Clock | None = None,
    ) -> None:
        self._store = store
        self._items = tuple(items)
        self._events = events
        self._pool_id = pool_id
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0

    def start(self) -> None:
        """Start scheduling in the background."""
        self._task = asyncio.create_task(self._main(), name=f"{self._pool_id} cron")

    def release(self) -> None:
        """Ask the scheduler to stop (no new jobs), without waiting; see :meth:`stop`."""
        self._stopped.set()

    async def stop(self) -> None:
        """Stop scheduling and wait until the scheduler has stopped. A statement in progress
        may finish (for up to :data:`STOP_TIMEOUT` seconds); it is then cancelled, which
        leaves nothing half done: each statement is atomic."""
        self.release()
        task, self._task = self._task, None
        if task is None:
            return
        _done, pending = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
        if pending:
            task.cancel()
            await asyncio.wait({task})

    async def start_up(self) -> datetime:
        """The start-up step: record new items and backfill the known ones. Returns the
        clock reading it started from. Errors propagate."""
        start = self._now()
        self._emit("cron:starting", start=start)
        identifiers = [item.key for item in self._items]
        known = await self._store.known_crontabs(identifiers)
        new = [identifier for identifier in identifiers if identifier not in known]
        if new:
            await self._store.remember(new, start)
        candidates = [
            (item, crontab.not_before)
            for item in self._items
            if (crontab := known.get(item.key)) is not None
        ]
        await self._backfill(start, candidates)
        self._emit("cron:started", start=start)
        return start

    async def schedule(
        self, items: Iterable[CronItem], tick: datetime, *, backfilled: bool = False
    ) -> list[int]:
        """Add the jobs of ``items`` for the minute ``tick`` where no worker has done so
        yet, in one statement. Returns the ids of the jobs added."""
        return await self._schedule(self._jobs(items, tick, backfilled), tick)

    # -- the loop --------------------------------------------------------------------

    async def _main(self) -> None:
        while not self._stopped.is_set():
            try:
                start = await self.start_up()
                await self._every_minute(start)
                return
            except Exception as error:
                self._failures += 1
                delay = RESTART_BACKOFF.delay(self._failures - 1)
                logger.error(
                    "cron failed; restarting in %.3f s (attempt %d): %s",
                    delay,
                    self._failures,
                    error,
                    exc_info=error,
                )
                await wait_event(self._stopped, delay)

    async def _every_minute(self, start: datetime) -> None:
        """Schedule each minute from the one after ``start``, until stopped."""
        tick = _ceil_minute(start)
        while True:
            delay = (tick - self._now()).total_seconds() + _PAST_THE_MINUTE
            if not await self._sleep(max(delay, 0.0)):
                return
            self._failures = 0
            current = self._now()
            current_minute = _floor_minute(current)
            if current_minute < tick:
                early = (tick - current).total_seconds()
                logger.debug("cron woke up %.3f s early (clock set back?); waiting", early)
                self._emit("cron:prematureTimer", timestamp=tick, current=current)
                continue
            if current_minute > tick:
                logger.debug("cron is behind by %s; catching up", current - tick)
                self._emit("cron:overdueTimer", timestamp=tick, current=current)
            jobs = self._jobs((item for item in self._items if item.matches(tick)), tick, False)
            if jobs:
                self._emit("cron:schedule", timestamp=tick, jobs=jobs)
                await self._schedule(jobs, tick)
                self._emit("cron:scheduled", timestamp=tick, jobs=jobs)
            tick += _MINUTE

    async def _backfill(self, start: datetime, candidates: list[tuple[CronItem, datetime]]) -> None:
        """Add the missed jobs, one minute at a time and oldest first: each statement moves
        ``last_execution`` forward, so a later minute first would hide an earlier one."""
        largest = max((item.options.backfill_period for item, _ in candidates), default=None)
        if not largest:
            return
        tick = _ceil_minute(start - largest)
        while tick < start:
            age = start - tick
            due = [
                item
                for item, not_before in candidates
                if item.options.backfill_period >= age and tick >= not_before and item.matches(tick)
            ]
            if due:
                jobs = self._jobs(due, tick, True)
                self._emit("cron:backfill", timestamp=tick, jobs=jobs)
                await self._schedule(jobs, tick)
            tick += _MINUTE

    # -- helpers ---------------------------------------------------------------------

    async def _schedule(self, jobs: tuple[CronJob, ...], tick: datetime) -> list[int]:
        if not jobs:
            return []
        return await self._store.schedule(jobs, tick)

    def _jobs(
        self, items: Iterable[CronItem], tick: datetime, backfilled: bool
    ) -> tuple[CronJob, ...]:
        return tuple(
            CronJob(
                identifier=item.key,
                task=item.task,
                payload=item.job_payload(tick, backfilled=backfilled),
                spec=JobSpec(
                    queue_name=item.options.queue_name,
                    run_at=tick,
                    max_attempts=item.options.max_attempts,
                    job_key=item.options.job_key,
                    job_key_mode=item.options.job_key_mode,
                    priority=item.options.priority,
                ),
            )
            for item in items
        )

    async def _sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` on the clock; ``False`` if stopped first."""
        if self._stopped.is_set():
            return False
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        stopper = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (sleeper, stopper):
                waiter.cancel()
        return not self._stopped.is_set()

    def _now(self) -> datetime:
        return self._clock.now().astimezone(UTC)

    def _emit(
        self,
        name: str,
        *,
        start: datetime | None = None,
        timestamp: datetime | None = None,
        current: datetime | None = None,
        jobs: tuple[CronJob, ...] = (),
    ) -> None:
        self._events.emit(
            CronEvent(
                name=name,
                pool_id=self._pool_id,
                start=start,
                timestamp=timestamp,
                current=current,
                jobs=jobs,
            )
        )


def _floor_minute(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


def _ceil_minute(when: datetime) -> datetime:
    floor = _floor_minute(when)
    return floor if floor == when else floor + _MINUTE
