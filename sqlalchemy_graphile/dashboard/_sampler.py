"""Throughput: samples of the jobs table's row counters, kept for an hour, and the jobs
completed and added per minute worked out from them.

A completed job is deleted, so it leaves no row to count afterwards. PostgreSQL's cumulative
statistics do count the deletes (``pg_stat_get_tuples_deleted``): the difference between two
samples is how many jobs left the table in between (completed by workers, or completed and
cleaned up by hand). Samples need not be regular: a gap spreads its difference evenly over
the minutes it spans. PostgreSQL publishes a backend's counts when it goes idle, at most a
few seconds late; a counter that goes down (statistics reset) starts a new series.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ._queries import JobCounters

logger = logging.getLogger("sqlalchemy_graphile.dashboard")

#: How far back the chart goes, in one-minute buckets.
WINDOW_MINUTES = 60
_KEEP = timedelta(minutes=WINDOW_MINUTES + 5)


@dataclass(frozen=True, slots=True)
class MinuteRate:
    """Jobs completed and added during the minute starting at ``start``; ``None`` where no
    two samples cover the minute."""

    start: datetime
    completed: float | None
    added: float | None


class ThroughputSampler:
    """Reads the counters with ``read`` every ``interval`` seconds while started, and keeps
    the samples of the last hour. :meth:`run_once` takes one sample at once."""

    def __init__(self, read: Callable[[], Awaitable[JobCounters]], interval: float) -> None:
        self._read = read
        self.interval = interval
        self._samples: deque[JobCounters] = deque()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def samples(self) -> list[JobCounters]:
        """The samples kept, oldest first."""
        return list(self._samples)

    @property
    def running(self) -> bool:
        """Whether the sampling loop runs."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start sampling on the running event loop (does nothing if already started)."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name="sqlalchemy-graphile dashboard sampler"
            )

    async def stop(self) -> None:
        """Stop sampling and wait for the loop to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> JobCounters:
        """Take one sample now, keep it, and return it. Database errors propagate."""
        sample = await self._read()
        self.add(sample)
        return sample

    def add(self, sample: JobCounters) -> None:
        """Keep ``sample`` (samples older than the window are dropped)."""
        if sample.inserted is None or sample.deleted is None:
            return
        if self._samples and sample.db_now <= self._samples[-1].db_now:
            return
        self._samples.append(sample)
        while self._samples and self._samples[0].db_now < sample.db_now - _KEEP:
            self._samples.popleft()

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
                self._failing = False
            except Exception as error:
                if not self._failing:
                    logger.warning("throughput sample failed (will retry): %s", error)
                self._failing = True
            await asyncio.sleep(self.interval)

    def per_minute(self, now: datetime, minutes: int = WINDOW_MINUTES) -> list[MinuteRate]:
        """Jobs completed and added in each of the ``minutes`` whole minutes up to ``now``
        (the current, partial minute last)."""
        end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        starts = [end - timedelta(minutes=minutes - i) for i in range(minutes)]
        completed: list[float | None] = [None] * minutes
        added: list[float | None] = [None] * minutes
        samples = self.samples
        for before, after in itertools.pairwise(samples):
            deleted = _difference(before.deleted, after.deleted)
            inserted = _difference(before.inserted, after.inserted)
            if deleted is None or inserted is None:
                continue
            span = (after.db_now - before.db_now).total_seconds()
            for i, start in enumerate(starts):
                overlap = _overlap(before.db_now, after.db_now, start, start + timedelta(minutes=1))
                if overlap > 0:
                    share = overlap / span
                    completed[i] = (completed[i] or 0.0) + deleted * share
                    added[i] = (added[i] or 0.0) + inserted * share
        return [
            MinuteRate(start, done, new)
            for start, done, new in zip(starts, completed, added, strict=True)
        ]


def _difference(before: int | None, after: int | None) -> int | None:
    if before is None or after is None or after < before:
        return None
    return after - before


def _overlap(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> float:
    return max(0.0, (min(a_end, b_end) - max(a_start, b_start)).total_seconds())
