"""The local queue: a job source that fetches batches of jobs for the whole worker
(``local_queue_size``, Graphile Worker's ``localQueue``).

One fetch locks up to ``size`` jobs to the worker's pool id; slots then take jobs from
memory instead of each asking the database. The queue is always in one mode:

* ``STARTING``: just made; the first request for a job moves to ``POLLING`` (so a worker
  whose forbidden flags make every fetch direct never fills the cache).
* ``POLLING``: nothing cached. A fetch runs now (unless a refetch delay holds it back).
  Fetched jobs go to waiting slots first, the rest are cached (``WAITING``). With nothing
  cached it fetches again at once when the fetch was full or an announcement arrived
  meanwhile, else after ``poll_interval`` (run-once: it is released instead).
* ``WAITING``: jobs are cached and handed out; announcements are ignored. When the cache
  empties it goes back to ``POLLING``; after ``ttl`` seconds the jobs still cached are
  given back (``TTL_EXPIRED``). Unlike Graphile Worker, when the last fetch was full and
  half of its jobs are handed out, the next batch is fetched already (a refill), so that
  slots do not sit idle while it is fetched.
* ``TTL_EXPIRED``: the next request for a job goes back to ``POLLING``.
* ``RELEASED``: stopping. Waiting slots get no job and cached jobs are given back (their
  attempt refunded).

A batch never holds two jobs of one named queue (see :meth:`Statements.fetch`); the pool
pulses the queue when it releases a queued job, so the queue's next job is fetched soon.
A fetch with forbidden flags bypasses the cache and fetches one job directly (as in
Graphile Worker, even for an empty list).

Fetch errors in a continuous worker are logged and the fetch is tried again after a capped
backoff; in run-once mode the error goes to the waiting slots (the run fails with it) and
the queue is released.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from .._backoff import Backoff
from .._store import FetchedJob, JobStore
from ..events import LocalQueueEvent, LocalQueueMode, WorkerEvents
from ._fetch import DirectJobSource
from ._observer import LatencyObserver
from ._options import RefetchDelay
from ._retry import FETCH_ERROR_BACKOFF, transient_backoff, with_retries
from ._task_ids import TaskIdentifiers

logger = logging.getLogger("sqlalchemy_graphile.worker")

STARTING = LocalQueueMode.STARTING
POLLING = LocalQueueMode.POLLING
WAITING = LocalQueueMode.WAITING
TTL_EXPIRED = LocalQueueMode.TTL_EXPIRED
RELEASED = LocalQueueMode.RELEASED

#: Giving jobs back is tried this often before the worker is asked to shut down.
RETURN_MAX_ATTEMPTS = 20
_RETURN_BACKOFF = Backoff(0.2, 30.0)


class LocalQueue:
    """A :class:`~sqlalchemy_graphile.worker._fetch.JobSource` that caches batches.

    ``on_major_error(error)`` is called when jobs could not be given back after
    :data:`RETURN_MAX_ATTEMPTS` tries (the pool then shuts down gracefully).
    """

    def __init__(
        self,
        store: JobStore,
        task_ids: TaskIdentifiers,
        *,
        size: int,
        ttl: float,
        poll_interval: float,
        refetch_delay: RefetchDelay | None,
        continuous: bool,
        use_local_time: bool,
        events: WorkerEvents,
        on_major_error: Callable[[Exception], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        observer: LatencyObserver | None = None,
    ) -> None:
        self._store = store
        self._observer = observer
        self._task_ids = task_ids
        self._pool_id = store.pool_id
        self._size = size
        self._ttl = ttl
        self._poll_interval = poll_interval
        self._refetch_delay = refetch_delay
        self._continuous = continuous
        self._use_local_time = use_local_time
        self._events = events
        self._on_major_error = on_major_error
        self._clock = clock
        self._direct = DirectJobSource(
            store,
            task_ids,
            use_local_time=use_local_time,
            continuous=continuous,
            clock=clock,
            observer=observer,
        )
        self.mode = STARTING
        self._jobs: deque[FetchedJob] = deque()
        self._waiters: deque[asyncio.Future[FetchedJob | None]] = deque()
        self._fetching = False
        self._refilling = False
        self._last_full = False
        self._refill_at = size // 2
        self._fetch_again = False
        self._fetch_failures = 0
        self._fetch_timer: asyncio.TimerHandle | None = None
        self._ttl_timer: asyncio.TimerHandle | None = None
        self._delay_active = False
        self._delay_fetch_on_end = False
        self._delay_timer: asyncio.TimerHandle | None = None
        self._delay_counter = 0
        self._delay_abort_threshold = float("inf")
        self._queued_running = 0
        self._background: set[asyncio.Task[None]] = set()
        self._errors: list[Exception] = []
        self._emit("localQueue:init")

    # -- the JobSource interface ------------------------------------------------------

    async def get_job(self, forbidden_flags: Sequence[str] | None) -> FetchedJob | None:
        if self.mode == RELEASED:
            return None
        if forbidden_flags is not None:
            return await self._direct.get_job(forbidden_flags)
        if self.mode in (STARTING, TTL_EXPIRED):
            self._set_polling()
        if self._jobs:
            job = self._jobs.popleft()
            if not self._jobs:
                if not self._refilling:  # else the refill decides what comes next
                    self._set_polling()
            elif len(self._jobs) <= self._refill_at and self._last_full and not self._refilling:
                self._refilling = True
                self._spawn(self._run_refill())
            return self._handed(job)
        waiter: asyncio.Future[FetchedJob | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            handed = await waiter
        except asyncio.CancelledError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is not None:  # handed over as the slot was cancelled: give it back
                    if handed.queue_id is not None:
                        self._queued_running -= 1
                    self._give_back([handed])
            raise
        return handed

    @property
    def cached(self) -> int:
        """How many fetched jobs wait in the cache for a slot."""
        return len(self._jobs)

    def queues_released(self, count: int) -> None:
        """``count`` jobs of named queues were completed or failed, unlocking their queues:
        their successors may be runnable now, so this counts as an announcement."""
        self._queued_running = max(0, self._queued_running - count)
        self._direct.queues_released(count)
        self.pulse(count)

    def pulse(self, count: int) -> int:
        """``count`` jobs were announced: fetch now if polling (or count towards ending a
        refetch delay). Slots that fetch directly (forbidden flags) may be woken too."""
        self._delay_counter += count
        # During a refetch delay a pulse only counts towards ending the delay.
        if not self._check_delay_abort() and self.mode == POLLING:
            if self._fetching:
                self._fetch_again = True
            elif self._fetch_timer is not None:
                self._fetch_timer.cancel()
                self._fetch_timer = None
                self._fetch()
        return count

    async def release(self) -> None:
        """Hand out no more jobs, give the cached ones back, and wait for fetches and
        returns in progress. Raises what went wrong meanwhile (jobs that could not be
        given back stay locked until the stale-lock sweep)."""
        await self._direct.release()
        if self.mode != RELEASED:
            self._set_released()
        while self._background:
            await asyncio.wait(set(self._background))
        if self._errors:
            errors, self._errors = self._errors, []
            raise errors[0] if len(errors) == 1 else ExceptionGroup("local queue", errors)

    def _handed(self, job: FetchedJob) -> FetchedJob:
        if job.queue_id is not None:
            self._queued_running += 1
        return job

    # -- modes ------------------------------------------------------------------------

    def _set_mode(self, mode: LocalQueueMode) -> None:
        old, self.mode = self.mode, mode
        self._emit("localQueue:setMode", old_mode=old, new_mode=mode)

    def _set_polling(self) -> None:
        if self._ttl_timer is not None:
            self._ttl_timer.cancel()
            self._ttl_timer = None
        self._set_mode(POLLING)
        self._fetch()

    def _set_waiting(self) -> None:
        self._set_mode(WAITING)
        self._arm_ttl()

    def _arm_ttl(self) -> None:
        if self._ttl_timer is not None:
            self._ttl_timer.cancel()
        self._ttl_timer = asyncio.get_running_loop().call_later(self._ttl, self._ttl_expired)

    def _ttl_expired(self) -> None:
        self._ttl_timer = None
        if self.mode != WAITING:
            return
        self._set_mode(TTL_EXPIRED)
        self._return_cached()

    def _set_released(self, error: Exception | None = None) -> None:
        old = self.mode
        self._set_mode(RELEASED)
        for timer in (self._delay_timer, self._fetch_timer, self._ttl_timer):
            if timer is not None:
                timer.cancel()
        self._delay_timer = self._fetch_timer = self._ttl_timer = None
        self._delay_active = False
        while self._waiters:
            waiter = self._waiters.popleft()
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(None)
        if old == WAITING:
            self._return_cached()

    # -- fetching ---------------------------------------------------------------------

    def _fetch(self) -> None:
        """Fetch now, unless a refetch delay holds fetches back (then fetch when it ends)."""
        if self._fetch_timer is not None:
            self._fetch_timer.cancel()
            self._fetch_timer = None
        if self.mode == RELEASED:
            return
        if self._delay_active:
            self._delay_fetch_on_end = True
            return
        self._fetching = True
        self._fetch_again = False
        self._delay_counter = 0
        self._spawn(self._run_fetch())

    async def _run_fetch(self) -> None:
        jobs: list[FetchedJob] = []
        failed: Exception | None = None
        try:
            jobs = await self._fetch_batch()
        except Exception as error:
            failed = error
        finally:
            self._fetching = False
        if failed is not None:
            self._fetch_failed(failed)
            return
        if self._fetch_failures:
            self._fetch_failures = 0
            logger.warning("fetching jobs works again")
        self._emit_jobs("localQueue:getJobs:complete", jobs)
        count = len(jobs)
        full = self._last_full = count >= self._size
        self._hand_out(jobs)
        if self.mode == RELEASED:
            self._return_cached()
            return
        delay = self._refetch_delay
        if delay is not None and not full and count <= delay.threshold:
            self._start_delay(delay, count)
        if self._jobs:
            self._set_waiting()
        elif full or self._fetch_again:
            self._fetch()
        elif self._continuous or self._queued_running > 0:
            # Run-once: a running job of a named queue may leave a successor behind; the
            # pulse sent when its queue is unlocked fetches it.
            self._fetch_later(self._poll_interval)
        else:
            self._set_released()
            return
        self._check_delay_abort()

    async def _run_refill(self) -> None:
        jobs: list[FetchedJob] = []
        try:
            jobs = await self._fetch_batch()
        except Exception as error:
            logger.debug("fetching the next batch early failed: %s", error)
        finally:
            self._refilling = False
        self._emit_jobs("localQueue:getJobs:complete", jobs)
        self._last_full = len(jobs) >= self._size
        self._hand_out(jobs)
        if self.mode == RELEASED:
            self._return_cached()
        elif self._jobs:
            if self.mode == WAITING:
                self._arm_ttl()
            else:
                self._set_waiting()
        elif self.mode == WAITING:
            self._set_polling()

    async def _fetch_batch(self) -> list[FetchedJob]:
        tasks = await self._task_ids.resolve()
        now = self._clock() if self._use_local_time else None
        observer = self._observer
        started = time.perf_counter() if observer is not None else 0.0
        jobs = await with_retries(lambda: self._store.fetch(tasks, self._size, now=now))
        if observer is not None:
            observer.fetched(time.perf_counter() - started, len(jobs))
        return jobs

    def _fetch_failed(self, error: Exception) -> None:
        if self.mode == RELEASED:
            logger.debug("a fetch failed while the worker was stopping: %s", error)
            return
        if not self._continuous:
            logger.error("fetching jobs failed: %s", error)
            self._set_released(error)
            return
        if self._fetch_failures == 0:
            logger.error("fetching jobs failed; retrying with backoff: %s", error, exc_info=error)
        else:
            logger.debug("fetching jobs failed again: %s", error)
        delay = min(FETCH_ERROR_BACKOFF.delay(self._fetch_failures), self._poll_interval)
        self._fetch_failures += 1
        self._fetch_later(delay)

    def _fetch_later(self, seconds: float) -> None:
        self._fetch_timer = asyncio.get_running_loop().call_later(seconds, self._fetch)

    def _hand_out(self, jobs: list[FetchedJob]) -> None:
        for job in jobs:
            while self._waiters and self._waiters[0].done():
                self._waiters.popleft()
            if self._waiters:
                self._waiters.popleft().set_result(self._handed(job))
            else:
                self._jobs.append(job)

    # -- the refetch delay ------------------------------------------------------------

    def _start_delay(self, delay: RefetchDelay, job_count: int) -> None:
        seconds = (0.5 + random.random()) * delay.duration
        maximum = delay.max_abort_threshold or 0
        abort_threshold = random.random() * maximum or float("inf")
        self._fetch_again = False
        self._delay_active = True
        self._delay_fetch_on_end = False
        self._delay_abort_threshold = abort_threshold
        self._delay_timer = asyncio.get_running_loop().call_later(seconds, self._end_delay)
        self._emit(
            "localQueue:refetchDelay:start",
            job_count=job_count,
            threshold=delay.threshold,
            delay=seconds,
            abort_threshold=abort_threshold,
        )

    def _end_delay(self, aborted: bool = False) -> None:
        if self._delay_timer is not None:
            self._delay_timer.cancel()
            self._delay_timer = None
        self._delay_active = False
        if aborted:
            self._delay_fetch_on_end = True
            self._emit(
                "localQueue:refetchDelay:abort",
                count=self._delay_counter,
                abort_threshold=self._delay_abort_threshold,
            )
        else:
            self._emit("localQueue:refetchDelay:expired")
        if self.mode == POLLING and self._delay_fetch_on_end:
            self._fetch()

    def _check_delay_abort(self) -> bool:
        """Whether a refetch delay is active (ending it if enough jobs were announced)."""
        if not self._delay_active or self.mode == RELEASED:
            return False
        if self._delay_counter >= self._delay_abort_threshold:
            self._end_delay(aborted=True)
        return True

    # -- giving jobs back -------------------------------------------------------------

    def _return_cached(self) -> None:
        if self._jobs:
            jobs = list(self._jobs)
            self._jobs.clear()
            self._give_back(jobs)

    def _give_back(self, jobs: list[FetchedJob]) -> None:
        self._emit_jobs("localQueue:returnJobs", jobs)
        self._spawn(self._return_jobs([f.id for f in jobs]))

    async def _return_jobs(self, job_ids: list[int]) -> None:
        attempt = 0
        while True:
            try:
                await self._store.give_back(job_ids)
                return
            except Exception as error:
                attempt += 1
                logger.error(
                    "giving %d unstarted job(s) back failed (attempt %d of %d): %s",
                    len(job_ids),
                    attempt,
                    RETURN_MAX_ATTEMPTS,
                    error,
                )
                if self.mode == RELEASED or attempt >= RETURN_MAX_ATTEMPTS:
                    if self.mode != RELEASED:
                        self._on_major_error(error)
                    self._errors.append(error)
                    return
                backoff = transient_backoff(error) or _RETURN_BACKOFF
                await asyncio.sleep(backoff.delay(attempt - 1))

    # -- plumbing ---------------------------------------------------------------------

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _emit(self, name: str, **fields: Any) -> None:
        self._events.emit(LocalQueueEvent(name=name, pool_id=self._pool_id, **fields))

    def _emit_jobs(self, name: str, jobs: list[FetchedJob]) -> None:
        """Emit ``name`` with ``jobs``; their :class:`Job` objects are built only for a
        listener."""
        if self._events.listening(name):
            self._emit(name, jobs=tuple(f.job for f in jobs))
