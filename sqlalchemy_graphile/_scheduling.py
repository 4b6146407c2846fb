"""The jobs each add method adds: its arguments validated, then passed through the
``before_job_schedule`` hooks of the registered plugins.

:class:`JobScheduling` is where every add starts, whichever driver then adds the jobs:
:class:`~sqlalchemy_graphile._operations.JobOperations` on a SQLAlchemy connection
(``JobHelpers``, ``AsyncJobHelpers``, ``WorkerUtils``, ``run_jobs``) and the worker's
in-task adder on its job store (:class:`~sqlalchemy_graphile._store._adder.StoreAdder`).
No I/O; nothing here imports SQLAlchemy or a driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import _job_input
from ._job_input import NewJob
from ._plugins import Plugins
from .job_spec import JobSpec, RawJobSpec
from .tasks import BatchTask, Task


@dataclass(frozen=True, slots=True)
class BulkAdd:
    """The jobs of a bulk add, as the hooks left them, and the one ``preserve_run_at`` flag
    they share (:func:`~sqlalchemy_graphile._job_input.bulk_preserve_run_at`)."""

    jobs: list[NewJob]
    preserve_run_at: bool


class JobScheduling:
    """Each add method's jobs: validated (typed errors, before any SQL) and passed through
    the ``before_job_schedule`` hooks of ``plugins`` (which may refuse them with
    :class:`JobScheduleError`)."""

    __slots__ = ("_plugins",)

    def __init__(self, plugins: Plugins | None = None) -> None:
        # Only set when a hook exists: without one, an add pays a single test.
        self._plugins = plugins if plugins is not None and plugins.schedules else None

    def add_job(self, task: Task, spec: JobSpec | None) -> NewJob:
        return self._single(_job_input.from_task(task, spec))

    def add_jobs(self, jobs: Sequence[tuple[Task, JobSpec | None]]) -> BulkAdd:
        return self._bulk(_job_input.from_tasks(jobs))

    def add_raw_job(self, identifier: str, payload: Any, spec: JobSpec | None) -> NewJob:
        return self._single(_job_input.from_raw(identifier, payload, spec))

    def add_raw_jobs(self, jobs: Sequence[RawJobSpec]) -> BulkAdd:
        return self._bulk(_job_input.from_raw_specs(jobs))

    def add_batch_job(self, items: Sequence[BatchTask], spec: JobSpec | None) -> NewJob:
        return self._single(_job_input.from_batch(items, spec), batch=True)

    def _single(self, job: NewJob, *, batch: bool = False) -> NewJob:
        if self._plugins is not None:
            job = self._plugins.schedule(job, batch=batch)
        return job

    def _bulk(self, jobs: list[NewJob]) -> BulkAdd:
        if self._plugins is not None:
            jobs = self._plugins.schedule_all(jobs)
        return BulkAdd(jobs, _job_input.bulk_preserve_run_at(jobs))
