"""Job sources: where a worker slot gets its next job.

:class:`JobSource` is the seam: the slot loop only calls :meth:`~JobSource.get_job`, and the
pool forwards wake-ups to :meth:`~JobSource.pulse` and calls :meth:`~JobSource.release` when
it stops. :class:`DirectJobSource` fetches and locks one job per call; the
local queue (``_local_queue``) prefetches batches for the whole pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from .._store import FetchedJob, JobStore, TaskIds
from ._observer import LatencyObserver
from ._retry import with_retries
from ._task_ids import TaskIdentifiers


class JobSource(Protocol):
    """What a worker slot fetches jobs from."""

    async def get_job(self, forbidden_flags: Sequence[str] | None) -> FetchedJob | None:
        """The next job, locked by this pool, or ``None`` when nothing is runnable (or the
        source is released). Database errors propagate."""

    def queues_released(self, count: int) -> None:
        """``count`` jobs of named queues were completed or failed, which unlocked their
        queues."""

    def pulse(self, count: int) -> int:
        """``count`` jobs were announced. Return how many of them idle slots should still be
        woken for (a direct source leaves them all to the slots)."""

    async def release(self) -> None:
        """Stop handing out jobs (and give back any held but not started)."""


class DirectJobSource:
    """Fetches exactly one job per call from the store, retrying transient errors
    (:func:`with_retries`). With ``use_local_time`` the application's ``clock`` decides
    which jobs are due, not the database's.

    In run-once mode (``continuous=False``) a fetch that finds nothing while jobs of named
    queues it handed out are still unreleased waits for their release and tries again:
    their successors in the queue become runnable then (their outcome may be written later
    than the slot asks again, with batched release).

    An ``observer`` is told how long each fetch statement took.
    """

    def __init__(
        self,
        store: JobStore,
        task_ids: TaskIdentifiers,
        *,
        use_local_time: bool,
        continuous: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        observer: LatencyObserver | None = None,
    ) -> None:
        self._store = store
        self._observer = observer
        self._task_ids = task_ids
        self._use_local_time = use_local_time
        self._clock = clock
        self._released = False
        self._continuous = continuous
        self._queued_running = 0
        self._queue_released = asyncio.Event()

    async def get_job(self, forbidden_flags: Sequence[str] | None) -> FetchedJob | None:
        while not self._released:
            released = self._queue_released
            job = await self._fetch_one(forbidden_flags)
            if job is not None:
                if job.queue_id is not None:
                    self._queued_running += 1
                return job
            if self._continuous or self._queued_running == 0:
                return None
            await released.wait()
        return None

    async def _fetch_one(self, forbidden_flags: Sequence[str] | None) -> FetchedJob | None:
        tasks = await self._task_ids.resolve()
        if not tasks.ids:
            return None
        now = self._clock() if self._use_local_time else None
        observer = self._observer
        started = time.perf_counter() if observer is not None else 0.0
        jobs = await with_retries(
            lambda: self._store.fetch(tasks, 1, forbidden_flags=forbidden_flags, now=now)
        )
        if observer is not None:
            observer.fetched(time.perf_counter() - started, len(jobs))
        return jobs[0] if jobs else None

    async def next_fetch(self) -> tuple[TaskIds, datetime | None] | None:
        """What a fetch made together with a release needs (the task ids and the time), or
        ``None`` when this source hands out no more jobs."""
        if self._released:
            return None
        tasks = await self._task_ids.resolve()
        if not tasks.ids:
            return None
        return tasks, self._clock() if self._use_local_time else None

    def took(self, job: FetchedJob) -> None:
        """``job`` was fetched together with a release, not by :meth:`get_job`."""
        if job.queue_id is not None:
            self._queued_running += 1

    def pulse(self, count: int) -> int:
        return count

    def queues_released(self, count: int) -> None:
        self._queued_running = max(0, self._queued_running - count)
        self._wake()

    async def release(self) -> None:
        self._released = True
        self._wake()

    def _wake(self) -> None:
        self._queue_released.set()
        self._queue_released = asyncio.Event()
