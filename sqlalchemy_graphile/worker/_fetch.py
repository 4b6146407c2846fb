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
from typing import Any, Protocol

import asyncpg

from ._jobs import FetchedJob, fetched_job
from ._observer import LatencyObserver
from ._retry import with_retries
from ._sql import Statements
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
    """Fetches exactly one job per call with the fetch statement, on the pool's asyncpg
    connections, retrying transient errors (:func:`with_retries`). With ``use_local_time``
    the application's ``clock`` decides which jobs are due, not the database's.

    In run-once mode (``continuous=False``) a fetch that finds nothing while jobs of named
    queues it handed out are still unreleased waits for their release and tries again:
    their successors in the queue become runnable then (their outcome may be written later
    than the slot asks again, with batched release).

    An ``observer`` is told how long each fetch statement took.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        statements: Statements,
        task_ids: TaskIdentifiers,
        pool_id: str,
        *,
        use_local_time: bool,
        continuous: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        observer: LatencyObserver | None = None,
    ) -> None:
        self._pool = pool
        self._observer = observer
        self._statements = statements
        self._task_ids = task_ids
        self._pool_id = pool_id
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
        ids = await self._task_ids.resolve(self._pool)
        if not ids.ids:
            return None
        with_flags = bool(forbidden_flags)
        query = self._statements.fetch(1, with_flags=with_flags, app_time=self._use_local_time)
        args: list[Any] = [self._pool_id, ids.ids]
        if with_flags:
            args.append(list(forbidden_flags or ()))
        if self._use_local_time:
            args.append(self._clock())
        observer = self._observer
        started = time.perf_counter() if observer is not None else 0.0
        # One statement, no transaction: the plan of a one-job fetch costs far less than
        # jit_above_cost, so it needs no jit setting (the local queue's batch fetch does).
        rows = await with_retries(lambda: self._pool.fetch(query, *args))
        if observer is not None:
            observer.fetched(time.perf_counter() - started, len(rows))
        if not rows:
            return None
        row = rows[0]
        return fetched_job(row, ids.identifier_by_id[row["task_id"]])

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
