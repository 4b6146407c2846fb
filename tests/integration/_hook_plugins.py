"""Plugins shared by the hook tests (importable as ``--plugin`` references too)."""

from __future__ import annotations

import contextvars
from typing import Any

from sqlalchemy_graphile import (
    JobRun,
    JobRunResult,
    JobScheduleRefusedError,
    JobScheduleSkippedError,
    JobToSchedule,
    WorkerPlugin,
)

#: Set by :class:`Around` before each run; tasks read it.
CURRENT_RUN: contextvars.ContextVar[str | None] = contextvars.ContextVar("run", default=None)


def _stamped(payload: Any) -> Any:
    if isinstance(payload, dict):
        return {**payload, "stamp": "hooked"}
    if isinstance(payload, list):
        return [_stamped(item) for item in payload]
    return payload


class Stamp(WorkerPlugin):
    """Adds ``"stamp": "hooked"`` to object payloads (and to each object item) and gives the
    job priority 7; skips jobs whose payload says ``skip``, refuses those saying ``refuse``."""

    def before_job_schedule(self, job: JobToSchedule) -> JobToSchedule:
        items = job.payload if isinstance(job.payload, list) else [job.payload]
        for item in items:
            if isinstance(item, dict) and item.get("skip"):
                raise JobScheduleSkippedError()
            if isinstance(item, dict) and item.get("refuse"):
                raise JobScheduleRefusedError("refused by Stamp")
        spec = job.spec.model_copy(update={"priority": 7})
        return JobToSchedule(job.identifier, _stamped(job.payload), spec)


class Broken(WorkerPlugin):
    """Every hook raises, after changing the payload in place."""

    def before_job_schedule(self, job: JobToSchedule) -> JobToSchedule:
        if isinstance(job.payload, dict):
            job.payload["broken"] = True
        raise RuntimeError("broken schedule hook")

    async def before_job_run(self, run: JobRun) -> None:
        raise RuntimeError("broken before_job_run")

    def after_job_run(self, run: JobRun, result: JobRunResult) -> None:
        raise RuntimeError("broken after_job_run")


class Around(WorkerPlugin):
    """Records every run: sets :data:`CURRENT_RUN` for the task, and keeps what
    ``after_job_run`` saw."""

    def __init__(self) -> None:
        self.before: list[JobRun] = []
        self.after: list[tuple[JobRun, JobRunResult, str | None]] = []
        self._tokens: dict[JobRun, contextvars.Token[str | None]] = {}

    async def before_job_run(self, run: JobRun) -> None:
        self.before.append(run)
        self._tokens[run] = CURRENT_RUN.set(f"run of job {run.job.id}")

    async def after_job_run(self, run: JobRun, result: JobRunResult) -> None:
        self.after.append((run, result, CURRENT_RUN.get()))
        CURRENT_RUN.reset(self._tokens.pop(run))
