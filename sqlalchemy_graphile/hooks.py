"""Plugins: hooks that intercept adding and running jobs.

Subclass :class:`WorkerPlugin`, override the hooks you need, and register an instance with
``plugins=[...]`` on :class:`~sqlalchemy_graphile.Worker`,
:class:`~sqlalchemy_graphile.WorkerUtils`, :class:`~sqlalchemy_graphile.JobHelpers` or
:class:`~sqlalchemy_graphile.AsyncJobHelpers`::

    class Audit(WorkerPlugin):
        def before_job_schedule(self, job: JobToSchedule) -> JobToSchedule:
            return replace(job, payload={**job.payload, "added_by": current_user()})

        async def after_job_run(self, run: JobRun, result: JobRunResult) -> None:
            log_duration(run.job.task_identifier, result.duration)

Plugins run in registration order. A hook that raises is logged, reported as a
``hook:error`` event (:class:`~sqlalchemy_graphile.HookErrorEvent`) and otherwise ignored:
the job is added or run as if that hook were not there. The exceptions a hook raises on
purpose, :class:`~sqlalchemy_graphile.JobScheduleSkippedError` and
:class:`~sqlalchemy_graphile.JobScheduleRefusedError`, are the exception to that rule.
With no plugin registered, none of this code runs.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .job import Job
from .job_spec import JobSpec


@dataclass(frozen=True, slots=True)
class JobToSchedule:
    """A job about to be added: its task ``identifier``, its ``payload`` (the JSON value
    that will be stored: a ``dict`` for a :class:`Task`, a ``list`` of item dicts for a batch
    job, any JSON value for a raw job) and its ``spec`` (a
    :class:`~sqlalchemy_graphile.JobSpec`; the defaults when none was given).

    ``payload`` is a fresh copy that the hook may change in place; or return a new object
    with :func:`dataclasses.replace`."""

    identifier: str
    payload: Any
    spec: JobSpec


class JobRunOutcome(StrEnum):
    """How a run ended: the task returned, it failed (raised, or its payload did not fit),
    or it was interrupted (cancelled by a forceful shutdown)."""

    SUCCESS = "success"
    FAILURE = "failure"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True, eq=False)
class JobRun:
    """One run of a job: the ``job`` row as fetched (``attempts`` counts this attempt) and
    the ``worker_id`` (lock owner id) of the worker running it. The same object is given to
    :meth:`WorkerPlugin.before_job_run` and :meth:`WorkerPlugin.after_job_run`, and it
    compares and hashes by identity, so a plugin can key its own state on it."""

    job: Job
    worker_id: str


@dataclass(frozen=True, slots=True)
class JobRunResult:
    """What a run came to: its ``outcome``, the task's ``error`` (``None`` on success),
    the ``duration`` in seconds, the failed items' errors of a batch job
    (``batch_errors``), and whether the failure used the job's last attempt (``final``)."""

    outcome: JobRunOutcome
    duration: float
    error: BaseException | None = None
    batch_errors: tuple[BaseException | str, ...] | None = None
    final: bool = False

    @property
    def succeeded(self) -> bool:
        return self.outcome is JobRunOutcome.SUCCESS


@dataclass(frozen=True, slots=True)
class JobRecovery:
    """A job crash recovery gave back to the queue: the ``job`` row after recovery, the
    ``worker_id`` of the worker that recovered it and the ``previous_worker_id`` that held
    its lock when that worker died (``None`` when unknown)."""

    job: Job
    worker_id: str
    previous_worker_id: str | None = None


class WorkerPlugin:
    """Base class of plugins. Every hook does nothing by default; override the ones you
    need (only overridden hooks are ever called).

    * :meth:`before_job_schedule` (synchronous): may rewrite a job before it is added, skip
      it or refuse it; called by every add method of :class:`JobHelpers`,
      :class:`AsyncJobHelpers`, :class:`WorkerUtils`, ``ctx.add_job`` in tasks and the
      command line's ``add``.
    * :meth:`before_job_run` / :meth:`after_job_run` (``def`` or ``async def``): around each
      run of a task in a :class:`Worker`.
    * :meth:`on_job_recovery` (``def`` or ``async def``): when crash recovery gives a job
      back to the queue.
    """

    def before_job_schedule(self, job: JobToSchedule) -> JobToSchedule:
        """Return the job to add: ``job`` itself, changed in place, or a new
        :class:`JobToSchedule` (its identifier, payload and spec are validated again).

        Raise :class:`JobScheduleSkippedError` to skip the job or
        :class:`JobScheduleRefusedError` to refuse it: the add raises that error and adds
        nothing (a bulk add, nothing at all). Runs in the caller's thread, before any SQL
        and outside the database transaction; keep it quick."""
        return job

    def before_job_run(self, run: JobRun) -> Awaitable[None] | None:
        """Called just before the task runs, in the task's own context: context variables
        set here are seen by the task and by :meth:`after_job_run`."""
        return None

    def after_job_run(self, run: JobRun, result: JobRunResult) -> Awaitable[None] | None:
        """Called when the task has returned, failed or been interrupted, before the
        outcome is written to the database; it cannot change the outcome."""
        return None

    def on_job_recovery(self, recovery: JobRecovery) -> Awaitable[None] | None:
        """Called when crash recovery gives a job whose worker died back to the queue
        (the ``job:recovered`` event); observes, it cannot change the recovery."""
        return None


__all__ = [
    "JobRecovery",
    "JobRun",
    "JobRunOutcome",
    "JobRunResult",
    "JobToSchedule",
    "WorkerPlugin",
]
