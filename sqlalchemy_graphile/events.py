"""Worker events: what a running :class:`~sqlalchemy_graphile.Worker` reports, and how to
subscribe.

Event names are Graphile Worker's (``job:start``, ``pool:listen:error``, ...), so dashboards
and habits carry over. Each event is a small frozen dataclass; its class depends on what the
event is about::

    from sqlalchemy_graphile import JobEvent, Worker, WorkerEvents

    events = WorkerEvents()

    def on_failed(event: JobEvent) -> None:
        alert(f"job {event.job.id} failed for good: {event.error}")

    events.on("job:failed", on_failed)
    worker = Worker(url, tasks=[...], events=events)

A callback may be a plain function (called at once, on the event loop's thread) or an
``async def`` (scheduled as a task). A callback that raises is logged and never affects the
worker. Keep callbacks short: they run on the worker's event loop. Pass your own
:class:`WorkerEvents` to see the events emitted while the worker starts (``pool:create``,
``worker:create``, ...); otherwise subscribe on ``worker.events``.

Per job the order is ``worker:getJob:start``, ``job:start``, then ``job:success`` or
``job:error`` (followed by ``job:failed`` when no attempt is left), then ``job:complete``:
all of them once the outcome has been written to the database (with
``complete_job_batch_delay`` / ``fail_job_batch_delay``, once the batch holding it has been
written). A job whose lock this worker lost while it ran (a sweep gave it back, and another
worker may have taken it) is *fenced*: nothing is written for it, and it ends with
``job:fenced`` instead of ``job:success`` / ``job:error`` / ``job:failed`` / ``job:complete``.

Crash recovery reports ``worker:heartbeat`` (each heartbeat written) and
``worker:heartbeat:error`` (one that could not be written; it is retried), and for each
sweep that recovered anything ``worker:recovered`` (dead worker ids and job counts) and one
``job:recovered`` per job given back; ``worker:sweep:error`` when a sweep failed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar, overload

from ._recovery import RecoveredJob
from .errors import InvalidCallbackError
from .job import Job
from .job_spec import JobSpec

logger = logging.getLogger("sqlalchemy_graphile.events")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerEvent:
    """Base of every event: its ``name`` and the lock owner id (``pool_id``) of the worker."""

    name: str
    pool_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolEvent(WorkerEvent):
    """The worker as a whole started, stopped or began a shutdown (``message`` says why)."""

    message: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolErrorEvent(WorkerEvent):
    """A shutdown step failed, or a batched write failed (``action`` names which)."""

    error: BaseException
    action: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenEvent(WorkerEvent):
    """The LISTEN connection: connecting (``attempts``), connected, notified (``channel``,
    ``payload``), failed (``error``) or released; or ``pool:listen:unavailable`` (not
    Graphile Worker's): notifications do not arrive on it (a pooler in transaction mode),
    so the worker only polls."""

    attempts: int | None = None
    error: BaseException | None = None
    channel: str | None = None
    payload: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResetLockedEvent(WorkerEvent):
    """The stale-lock sweep started, succeeded or failed. ``delay`` is the number of seconds
    until the next sweep, ``None`` when the worker is stopping."""

    delay: float | None = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatEvent(WorkerEvent):
    """The worker's heartbeat in ``_private_workers`` was written (``worker:heartbeat``) or
    could not be (``worker:heartbeat:error``, with the ``error`` and the number of
    consecutive ``failures``; it is retried, and running jobs are not affected)."""

    error: BaseException | None = None
    failures: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryEvent(WorkerEvent):
    """A recovery sweep run by this worker recovered dead workers (``worker:recovered``):
    the registered ``dead_workers`` (and ``orphans``, unregistered owners recovered under
    ``recover_unregistered_locks``), ``jobs_recovered`` in all and ``jobs_per_worker``, and
    the number of queue locks cleared. ``worker:sweep:error`` carries the ``error`` of a
    sweep that failed."""

    dead_workers: tuple[str, ...] = ()
    orphans: tuple[str, ...] = ()
    jobs_recovered: int = 0
    jobs_per_worker: dict[str, int] | None = None
    queues_unlocked: int = 0
    error: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecoveredEvent(WorkerEvent):
    """A job held by a dead worker was given back by this worker's sweep
    (``job:recovered``). ``job`` says which (id, task identifier, queue name, the attempts
    it had before one was refunded, and the dead owner in ``locked_by``)."""

    job: RecoveredJob


class LocalQueueMode(StrEnum):
    """The mode of the local queue (``local_queue_size``), as ``localQueue:setMode`` events
    report it; the values are Graphile Worker's."""

    STARTING = "STARTING"
    POLLING = "POLLING"
    WAITING = "WAITING"
    TTL_EXPIRED = "TTL_EXPIRED"
    RELEASED = "RELEASED"


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalQueueEvent(WorkerEvent):
    """The local queue (``local_queue_size``) at work.

    * ``localQueue:init``; ``localQueue:setMode`` with ``old_mode`` and ``new_mode``
      (:class:`LocalQueueMode`: ``STARTING``, ``POLLING``, ``WAITING``, ``TTL_EXPIRED``,
      ``RELEASED``);
    * ``localQueue:getJobs:complete`` with the fetched ``jobs``;
      ``localQueue:returnJobs`` with the ``jobs`` given back unstarted;
    * ``localQueue:refetchDelay:start`` with ``job_count`` (what the fetch found),
      ``threshold``, ``delay`` (seconds) and ``abort_threshold``;
      ``localQueue:refetchDelay:abort`` with ``count`` (announced jobs) and
      ``abort_threshold``; ``localQueue:refetchDelay:expired``.
    """

    old_mode: LocalQueueMode | None = None
    new_mode: LocalQueueMode | None = None
    jobs: tuple[Job, ...] | None = None
    job_count: int | None = None
    threshold: int | None = None
    delay: float | None = None
    abort_threshold: float | None = None
    count: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotEvent(WorkerEvent):
    """One of the worker's ``concurrency`` slots (``worker_id``) changed state.

    ``job`` and ``job_error`` are set on ``worker:fatalError`` (the job whose outcome could
    not be written, and the task's own error if it failed) and on
    ``pool:gracefulShutdown:workerError``.
    """

    worker_id: str
    error: BaseException | None = None
    job: Job | None = None
    job_error: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEvent(WorkerEvent):
    """A job started or finished in slot ``worker_id``. ``error`` is the task's exception on
    failure; ``batch_errors`` holds the failed items' errors of a batch job."""

    worker_id: str
    job: Job
    error: BaseException | None = None
    batch_errors: tuple[BaseException | str, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HookErrorEvent(WorkerEvent):
    """A plugin's hook raised (``hook:error``); the error was logged and the job went on
    as if the hook had not been there (see :class:`~sqlalchemy_graphile.WorkerPlugin`).

    ``hook`` names the hook (``before_job_schedule``, ``before_job_run``, ...), ``plugin``
    is the plugin object, ``error`` what it raised. ``job`` is the job row for the run and
    recovery hooks; ``task_identifier`` is set for every hook. ``pool_id`` is empty when the
    hook ran in :class:`WorkerUtils` or the helpers rather than in a worker."""

    hook: str
    plugin: object
    error: BaseException
    task_identifier: str | None = None
    job: Job | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalEvent(WorkerEvent):
    """The process received a termination signal (``SIGTERM``, ...)."""

    signal: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CronJob:
    """A job cron is about to add: the cron item's ``identifier``, the ``task``
    identifier, the full ``payload`` (with its ``_cron`` key) and the ``spec`` (its
    ``run_at`` is the minute scheduled)."""

    identifier: str
    task: str
    payload: dict[str, Any]
    spec: JobSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class CronEvent(WorkerEvent):
    """The cron scheduler at work. Times are aware datetimes in UTC.

    * ``cron:starting`` / ``cron:started``: before and after registering new items and
      backfilling; ``start`` is the clock reading the scheduler started from.
    * ``cron:backfill``: ``jobs`` are being added for the missed minute ``timestamp``.
    * ``cron:schedule`` / ``cron:scheduled``: before and after adding ``jobs`` for the
      minute ``timestamp``.
    * ``cron:prematureTimer`` / ``cron:overdueTimer``: the timer for the minute
      ``timestamp`` fired while the clock read ``current``, which is in an earlier minute
      (the timer is set again) or a later one (the missed minutes are caught up at once).
    """

    start: datetime | None = None
    timestamp: datetime | None = None
    current: datetime | None = None
    jobs: tuple[CronJob, ...] = ()


PoolEventName = Literal[
    "pool:create",
    "pool:release",
    "pool:gracefulShutdown",
    "pool:gracefulShutdown:complete",
    "pool:forcefulShutdown",
    "pool:forcefulShutdown:complete",
    "stop",
]
PoolErrorEventName = Literal[
    "pool:gracefulShutdown:error",
    "pool:forcefulShutdown:error",
    "pool:fatalError",
]
ListenEventName = Literal[
    "pool:listen:connecting",
    "pool:listen:success",
    "pool:listen:error",
    "pool:listen:notification",
    "pool:listen:release",
    "pool:listen:unavailable",
]
LocalQueueEventName = Literal[
    "localQueue:init",
    "localQueue:setMode",
    "localQueue:getJobs:complete",
    "localQueue:returnJobs",
    "localQueue:refetchDelay:start",
    "localQueue:refetchDelay:abort",
    "localQueue:refetchDelay:expired",
]
ResetLockedEventName = Literal["resetLocked:started", "resetLocked:success", "resetLocked:failure"]
SlotEventName = Literal[
    "worker:create",
    "worker:release",
    "worker:stop",
    "worker:getJob:start",
    "worker:getJob:empty",
    "worker:getJob:error",
    "worker:fatalError",
    "pool:gracefulShutdown:workerError",
]
JobEventName = Literal[
    "job:start", "job:success", "job:error", "job:failed", "job:complete", "job:fenced"
]
HeartbeatEventName = Literal["worker:heartbeat", "worker:heartbeat:error"]
RecoveryEventName = Literal["worker:recovered", "worker:sweep:error"]
SignalEventName = Literal["gracefulShutdown", "forcefulShutdown"]
HookErrorEventName = Literal["hook:error"]
CronEventName = Literal[
    "cron:starting",
    "cron:started",
    "cron:backfill",
    "cron:prematureTimer",
    "cron:overdueTimer",
    "cron:schedule",
    "cron:scheduled",
]

E = TypeVar("E", bound=WorkerEvent)
#: A subscriber: a function or coroutine function taking the event.
Callback = Callable[[E], Awaitable[None] | None]


class WorkerEvents:
    """Subscriptions to a worker's events. Create one and pass it as ``Worker(events=...)``,
    or use the one on ``worker.events``."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[[Any], Any]]] = {}
        self._any: list[Callable[[Any], Any]] = []
        self._pending: set[asyncio.Task[Any]] = set()

    @overload
    def on(self, name: PoolEventName, callback: Callback[PoolEvent]) -> None: ...
    @overload
    def on(self, name: PoolErrorEventName, callback: Callback[PoolErrorEvent]) -> None: ...
    @overload
    def on(self, name: ListenEventName, callback: Callback[ListenEvent]) -> None: ...
    @overload
    def on(self, name: ResetLockedEventName, callback: Callback[ResetLockedEvent]) -> None: ...
    @overload
    def on(self, name: LocalQueueEventName, callback: Callback[LocalQueueEvent]) -> None: ...
    @overload
    def on(self, name: SlotEventName, callback: Callback[SlotEvent]) -> None: ...
    @overload
    def on(self, name: JobEventName, callback: Callback[JobEvent]) -> None: ...
    @overload
    def on(self, name: SignalEventName, callback: Callback[SignalEvent]) -> None: ...
    @overload
    def on(self, name: CronEventName, callback: Callback[CronEvent]) -> None: ...
    @overload
    def on(self, name: HeartbeatEventName, callback: Callback[HeartbeatEvent]) -> None: ...
    @overload
    def on(self, name: RecoveryEventName, callback: Callback[RecoveryEvent]) -> None: ...
    @overload
    def on(self, name: Literal["job:recovered"], callback: Callback[JobRecoveredEvent]) -> None: ...
    @overload
    def on(self, name: HookErrorEventName, callback: Callback[HookErrorEvent]) -> None: ...
    def on(self, name: str, callback: Callable[[Any], Any]) -> None:
        """Call ``callback(event)`` for every event called ``name``. Raises
        :class:`InvalidCallbackError` (a ``TypeError``) if ``callback`` is not callable."""
        if not callable(callback):
            raise InvalidCallbackError(f"the callback for {name!r} is not callable: {callback!r}")
        self._callbacks.setdefault(name, []).append(callback)

    def on_any(self, callback: Callback[WorkerEvent]) -> None:
        """Call ``callback(event)`` for every event, whatever its name. Raises
        :class:`InvalidCallbackError` (a ``TypeError``) if ``callback`` is not callable."""
        if not callable(callback):
            raise InvalidCallbackError(
                f"the callback for every event is not callable: {callback!r}"
            )
        self._any.append(callback)

    def off(self, name: str, callback: Callable[[Any], Any]) -> None:
        """Remove a callback added with :meth:`on` (no error if it is not subscribed)."""
        callbacks = self._callbacks.get(name)
        if callbacks is not None and callback in callbacks:
            callbacks.remove(callback)
            if not callbacks:
                del self._callbacks[name]

    def listening(self, *names: str) -> bool:
        """Whether any callback would receive an event called one of ``names`` (so that the
        worker need not build events nobody reads). Cheap enough to ask for every job."""
        if self._any:
            return True
        callbacks = self._callbacks
        if not callbacks:
            return False
        for name in names:  # noqa: SIM110 (a loop is faster than any() for one or two names)
            if name in callbacks:
                return True
        return False

    def emit(self, event: WorkerEvent) -> None:
        """Deliver ``event`` to its subscribers. Used by the worker's components; never
        raises."""
        for callback in (*self._callbacks.get(event.name, ()), *self._any):
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._pending.add(task)
                    task.add_done_callback(self._async_done)
            except Exception:
                logger.exception("a callback for worker event %r raised", event.name)

    def _async_done(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("an async callback for a worker event raised", exc_info=task.exception())

    async def drain(self, seconds: float) -> None:
        """Wait up to ``seconds`` for async callbacks still running, then cancel
        the rest. The worker calls this when it stops."""
        pending = set(self._pending)
        if not pending:
            return
        _done, late = await asyncio.wait(pending, timeout=seconds)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)


__all__ = [
    "CronEvent",
    "CronJob",
    "HeartbeatEvent",
    "HookErrorEvent",
    "JobEvent",
    "JobRecoveredEvent",
    "ListenEvent",
    "LocalQueueEvent",
    "LocalQueueMode",
    "PoolErrorEvent",
    "PoolEvent",
    "RecoveryEvent",
    "ResetLockedEvent",
    "SignalEvent",
    "SlotEvent",
    "WorkerEvent",
    "WorkerEvents",
]
