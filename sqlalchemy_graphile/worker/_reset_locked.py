"""The stale-lock sweep.

A worker that died while holding jobs leaves them locked. Every continuous worker therefore
clears job and queue locks older than four hours: first after a random delay below
``min(60 s, max_reset_locked_interval)`` (so that workers started together do not sweep
together), then every ``min_reset_locked_interval`` to ``max_reset_locked_interval``
seconds, uniformly at random. A cleared job runs again at once; the attempt it lost counts.
Events: ``resetLocked:started``, then ``resetLocked:success`` or ``resetLocked:failure``
with the delay until the next sweep (``None`` once the worker is stopping).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from .._aio import wait_event
from .._store import JobStore
from ..events import ResetLockedEvent, WorkerEvents
from ._retry import first_reset_locked_delay, reset_locked_delay, with_retries

logger = logging.getLogger("sqlalchemy_graphile.worker")


class ResetLockedSweeper:
    """Runs the sweep on a timer between :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        *,
        store: JobStore,
        events: WorkerEvents,
        min_interval: float,
        max_interval: float,
        use_local_time: bool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._events = events
        self._pool_id = store.pool_id
        self._min_interval = min_interval
        self._max_interval = max_interval
        self._use_local_time = use_local_time
        self._clock = clock
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Schedule the sweeps."""
        self._task = asyncio.create_task(self._loop(), name=f"{self._pool_id} reset locked")

    async def stop(self) -> None:
        """Cancel the timer and wait for a sweep in progress to finish."""
        self._stopped.set()
        if self._task is not None:
            await self._task

    async def sweep_now(self) -> None:
        """Sweep now (with events; the reported delay is ``None``). Errors propagate."""
        await self._sweep(lambda: None)

    async def _loop(self) -> None:
        delay = first_reset_locked_delay(self._max_interval)
        while await self._wait(delay):
            delay = reset_locked_delay(self._min_interval, self._max_interval)
            try:
                await self._sweep(self._next_delay(delay))
            except Exception as error:
                logger.error(
                    "clearing stale locks failed; trying again in %.3f s", delay, exc_info=error
                )

    def _next_delay(self, delay: float) -> Callable[[], float | None]:
        """The delay to report: ``None`` once stopping (no further sweep)."""
        return lambda: None if self._stopped.is_set() else delay

    async def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; ``False`` if stopped meanwhile."""
        return not await wait_event(self._stopped, seconds)

    async def _sweep(self, next_delay: Callable[[], float | None]) -> None:
        self._emit("resetLocked:started")
        now = self._clock() if self._use_local_time else None
        try:
            await with_retries(lambda: self._store.reset_stale_locks(now))
        except Exception as error:
            self._emit("resetLocked:failure", delay=next_delay(), error=error)
            raise
        self._emit("resetLocked:success", delay=next_delay())

    def _emit(
        self, name: str, *, delay: float | None = None, error: BaseException | None = None
    ) -> None:
        self._events.emit(
            ResetLockedEvent(name=name, pool_id=self._pool_id, delay=delay, error=error)
        )
