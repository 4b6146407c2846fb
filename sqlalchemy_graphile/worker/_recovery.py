"""Crash recovery in a running worker: the heartbeat and the recovery sweep.

:class:`Heartbeat` registers the pool's lock owner id in ``_private_workers`` when the pool
starts, refreshes it every ``heartbeat_interval`` seconds, and deregisters when the pool
stops cleanly. A heartbeat that cannot be written is reported (``worker:heartbeat:error``,
a warning) and tried again soon; it never stops the worker or its jobs.

:class:`RecoverySweeper` runs the recovery sweep every ``sweep_interval`` seconds (the
first time after a random part of it, so that workers started together do not sweep
together), each in a transaction of its own, and reports what it recovered
(``worker:recovered``, one ``job:recovered`` per job, and the plugins' ``on_job_recovery``
hooks with each job as it is read after the sweep committed).

Both run their statements through a
:class:`~sqlalchemy_graphile._store._recovery.RecoveryStore` and need the revision-20
registry (``RecoveryStore.available()`` tells whether the schema has it).
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime

from .._aio import wait_event
from .._plugins import Plugins
from .._recovery import SweepResult, SweepSettings
from .._store._recovery import RecoveryStore
from ..events import HeartbeatEvent, JobRecoveredEvent, RecoveryEvent, WorkerEvents
from ..hooks import JobRecovery

logger = logging.getLogger("sqlalchemy_graphile.worker")

#: The longest wait, in seconds, before a failed heartbeat is tried again.
HEARTBEAT_RETRY_MAX = 5.0

#: How long after another worker's heartbeat goes stale the sweep runs, in seconds.
STALE_MARGIN = 0.25

#: When this process loaded the worker (the ``process_started_at`` of its heartbeats).
PROCESS_STARTED_AT = datetime.now(UTC)


class Heartbeat:
    """Registers, refreshes and deregisters one pool between :meth:`start` and
    :meth:`stop`."""

    def __init__(
        self,
        *,
        store: RecoveryStore,
        events: WorkerEvents,
        pool_id: str,
        interval: float,
        metadata: str,
    ) -> None:
        self._store = store
        self._events = events
        self._pool_id = pool_id
        self._interval = interval
        self._metadata = metadata
        self._failures = 0
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def register(self) -> bool:
        """Write the first heartbeat, with the metadata; ``False`` (reported) on failure."""
        return await self._beat(self._metadata)

    def start(self) -> None:
        """Refresh the heartbeat every interval (sooner after a failure)."""
        self._task = asyncio.create_task(self._loop(), name=f"{self._pool_id} heartbeat")

    async def stop(self, *, deregister: bool) -> None:
        """Stop refreshing; with ``deregister``, delete the pool's row (a failure is only
        logged: the row then goes stale and the sweep deletes it)."""
        self._stopped.set()
        if self._task is not None:
            await self._task
        if not deregister:
            return
        try:
            await self._store.deregister(self._pool_id)
        except Exception as error:
            logger.warning(
                "worker %s: could not deregister from _private_workers (%s); the recovery "
                "sweep will delete its row once its heartbeat is stale",
                self._pool_id,
                error,
            )

    async def _loop(self) -> None:
        # A failed registration is retried first, with the metadata.
        delay = self._interval if self._failures == 0 else self._retry_delay()
        metadata: str | None = None if self._failures == 0 else self._metadata
        while not await wait_event(self._stopped, delay):
            if await self._beat(metadata):
                metadata = None
                delay = self._interval
            else:
                delay = self._retry_delay()

    def _retry_delay(self) -> float:
        return min(self._interval, HEARTBEAT_RETRY_MAX, 0.25 * 2.0 ** min(self._failures, 10))

    async def _beat(self, metadata: str | None) -> bool:
        try:
            await self._store.heartbeat(self._pool_id, metadata)
        except Exception as error:
            self._failures += 1
            if self._failures == 1 or self._failures % 10 == 0:
                logger.warning(
                    "worker %s: could not write its heartbeat (%s; %d failure(s) in a row); "
                    "retrying. Jobs keep running, but if this lasts longer than the sweep "
                    "threshold other workers will take them over",
                    self._pool_id,
                    error,
                    self._failures,
                )
            self._events.emit(
                HeartbeatEvent(
                    name="worker:heartbeat:error",
                    pool_id=self._pool_id,
                    error=error,
                    failures=self._failures,
                )
            )
            return False
        if self._failures:
            logger.info(
                "worker %s: heartbeat written again after %d failure(s)",
                self._pool_id,
                self._failures,
            )
            self._failures = 0
        if self._events.listening("worker:heartbeat"):
            self._events.emit(HeartbeatEvent(name="worker:heartbeat", pool_id=self._pool_id))
        return True


class RecoverySweeper:
    """Runs the recovery sweep on a timer between :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        *,
        store: RecoveryStore,
        events: WorkerEvents,
        pool_id: str,
        interval: float,
        settings: SweepSettings,
        plugins: Plugins | None = None,
    ) -> None:
        self._store = store
        self._plugins = plugins
        self._events = events
        self._pool_id = pool_id
        self._interval = interval
        self._settings = settings
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Schedule the sweeps."""
        self._task = asyncio.create_task(self._loop(), name=f"{self._pool_id} recovery sweep")

    async def stop(self) -> None:
        """Cancel the timer and wait for a sweep in progress to finish."""
        self._stopped.set()
        if self._task is not None:
            await self._task

    async def sweep_now(self) -> SweepResult:
        """Sweep now, with events and recovery hooks. Errors propagate (a hook's are
        reported, never raised)."""
        result = await self._store.sweep(self._settings)
        self._report(result)
        if self._plugins is not None and result.jobs:
            await self._call_hooks(self._plugins, result)
        return result

    async def _call_hooks(self, plugins: Plugins, result: SweepResult) -> None:
        """``on_job_recovery`` with each recovered job as it is now (still unlocked, unless
        a worker took it meanwhile)."""
        owners = {job.id: job.locked_by for job in result.jobs}
        for job in await self._store.jobs(list(owners)):
            recovery = JobRecovery(job, self._pool_id, owners[job.id])
            await plugins.job_recovered(recovery)

    async def _next_stale(self) -> float | None:
        """Seconds until another registered worker would go stale without a heartbeat
        (``None``: none registered, or the query failed; the interval applies)."""
        try:
            return await self._store.next_stale(self._settings.threshold, self._pool_id)
        except Exception as error:
            logger.debug("worker %s: reading heartbeat ages failed: %s", self._pool_id, error)
            return None

    async def _delay(self, delay: float) -> float:
        """``delay``, or less if another worker goes stale sooner: the sweep then runs just
        after it does, so a dead worker's jobs wait the threshold and not up to an interval
        more. A worker stale already is left to the interval (another sweeper holds the
        lock, or its resilient jobs give it longer)."""
        stale_in = await self._next_stale()
        if stale_in is not None and stale_in > 0:
            return min(delay, stale_in + STALE_MARGIN)
        return delay

    async def _loop(self) -> None:
        delay = random.uniform(0, self._interval)
        while not await wait_event(self._stopped, await self._delay(delay)):
            delay = self._interval
            try:
                await self.sweep_now()
            except Exception as error:
                logger.error(
                    "worker %s: the recovery sweep failed (%s); trying again in %g s",
                    self._pool_id,
                    error,
                    self._interval,
                )
                self._events.emit(
                    RecoveryEvent(name="worker:sweep:error", pool_id=self._pool_id, error=error)
                )

    def _report(self, result: SweepResult) -> None:
        if not (result.dead_workers or result.orphans):
            return
        owners = [*result.dead_workers, *result.orphans]
        logger.warning(
            "worker %s: recovered %d job(s) and %d queue lock(s) from %d dead worker(s): %s",
            self._pool_id,
            len(result.jobs),
            result.queues,
            len(owners),
            ", ".join(f"{owner} ({result.jobs_per_worker[owner]} job(s))" for owner in owners),
        )
        self._events.emit(
            RecoveryEvent(
                name="worker:recovered",
                pool_id=self._pool_id,
                dead_workers=result.dead_workers,
                orphans=result.orphans,
                jobs_recovered=len(result.jobs),
                jobs_per_worker=dict(result.jobs_per_worker),
                queues_unlocked=result.queues,
            )
        )
        for job in result.jobs:
            self._events.emit(
                JobRecoveredEvent(name="job:recovered", pool_id=self._pool_id, job=job)
            )
