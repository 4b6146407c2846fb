"""What each job-store operation runs and how its rows read back, for every store on a
database: the stores only run these calls, each on its own driver.

A :data:`~sqlalchemy_graphile._catalog._statement.Call` is a catalog statement with the
values of its parameters. :class:`Calls`
makes them for one set of statements and one lock owner; the ``read_*`` functions turn
the rows a call returned into the store's values.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .._catalog._columns import QUEUE_NAME, TASK_ID, TASK_IDENTIFIER, Row
from .._catalog._statement import Call
from .._catalog._worker import WorkerStatements, flag_list, id_list
from ._types import Failure, FetchedJob, TaskIds, fetched_job

#: Where a fetched job's queue name is in a fetch's row (right after the job columns).
_FETCHED_QUEUE_NAME = 16
#: Where release-and-fetch puts the ids it released (after the next job's queue name).
_RELEASED_IDS = 17


class Calls:
    """The calls of the job-store operations for ``statements``, locking as ``pool_id``."""

    def __init__(self, statements: WorkerStatements, pool_id: str) -> None:
        self.statements = statements
        self.pool_id = pool_id

    def register_tasks(self, identifiers: Sequence[str]) -> Call:
        return self.statements.register_tasks, {"identifiers": list(identifiers)}

    def task_ids(self, identifiers: Sequence[str]) -> Call:
        return self.statements.task_ids, {"identifiers": list(identifiers)}

    def fetch(
        self,
        tasks: TaskIds,
        batch_size: int,
        forbidden_flags: Sequence[str] | None,
        now: datetime | None,
    ) -> Call:
        with_flags = bool(forbidden_flags)
        statement = self.statements.fetch(
            batch_size, with_flags=with_flags, app_time=now is not None
        )
        return statement, self._fetch_values(tasks, forbidden_flags, now)

    def _fetch_values(
        self, tasks: TaskIds, forbidden_flags: Sequence[str] | None, now: datetime | None
    ) -> dict[str, Any]:
        values: dict[str, Any] = {"pool_id": self.pool_id, "task_ids": tasks.ids}
        if forbidden_flags:
            values["forbidden_flags"] = list(forbidden_flags)
        if now is not None:
            values["now"] = now
        return values

    def complete(self, jobs: Sequence[FetchedJob]) -> Call:
        statements = self.statements
        queued = any(job.queue_id is not None for job in jobs)
        statement = statements.complete_queued_jobs if queued else statements.complete_jobs
        return statement, {"job_ids": id_list(job.id for job in jobs), "pool_id": self.pool_id}

    def fail(self, failures: Sequence[Failure]) -> Call:
        statements = self.statements
        if len(failures) == 1:
            failure = failures[0]
            queued = failure.job.queue_id is not None
            statement = statements.fail_queued_job if queued else statements.fail_job
            return statement, {"job_id": failure.id, **self._failure_values(failure)}
        return statements.fail_jobs, {
            "job_ids": id_list(f.id for f in failures),
            "messages": [f.message for f in failures],
            "payloads": [f.replacement_payload for f in failures],
            "permanents": flag_list(f.permanent for f in failures),
            "pool_id": self.pool_id,
        }

    def _failure_values(self, failure: Failure) -> dict[str, Any]:
        return {
            "pool_id": self.pool_id,
            "message": failure.message,
            "payload": failure.replacement_payload,
            "permanent": failure.permanent,
        }

    def release_and_fetch(
        self,
        release: FetchedJob | Failure,
        tasks: TaskIds,
        forbidden_flags: Sequence[str] | None,
        now: datetime | None,
    ) -> Call:
        failed = isinstance(release, Failure)
        statement = self.statements.release_and_fetch(
            failed=failed, with_flags=bool(forbidden_flags), app_time=now is not None
        )
        values = self._fetch_values(tasks, forbidden_flags, now) | {"job_id": release.id}
        if isinstance(release, Failure):
            values |= self._failure_values(release)
        return statement, values

    def fail_held(self, job_ids: Sequence[int], message: str) -> Call:
        return self.statements.fail_jobs_with_message, {
            "job_ids": id_list(job_ids),
            "message": message,
            "pool_id": self.pool_id,
        }

    def give_back(self, job_ids: Sequence[int]) -> Call:
        return self.statements.return_jobs, {"job_ids": id_list(job_ids), "pool_id": self.pool_id}

    def jobs(self, job_ids: Sequence[int]) -> Call:
        return self.statements.jobs_by_id, {"job_ids": id_list(job_ids)}

    def reset_stale_locks(self, now: datetime | None) -> Call:
        statement = self.statements.reset_locked(app_time=now is not None)
        return statement, {} if now is None else {"now": now}


def read_task_ids(rows: Sequence[Row]) -> TaskIds:
    """The :class:`TaskIds` of ``(id, identifier)`` rows."""
    by_id = {int(row[0]): row[1] for row in rows}
    return TaskIds(id_list(sorted(by_id)), by_id)


def read_fetched(rows: Sequence[Row], tasks: TaskIds) -> list[FetchedJob]:
    """The jobs a fetch locked."""
    names = tasks.identifier_by_id
    return [fetched_job(row, names[row[TASK_ID]], row[_FETCHED_QUEUE_NAME]) for row in rows]


def read_release_and_fetch(row: Row | None, tasks: TaskIds) -> tuple[bool, FetchedJob | None]:
    """Whether release-and-fetch released its job, and the next job it locked, if any."""
    if row is None:
        return False, None
    recorded = row[_RELEASED_IDS] is not None
    if row[0] is None:
        return recorded, None
    return recorded, read_fetched([row], tasks)[0]


def read_jobs(rows: Sequence[Row]) -> list[FetchedJob]:
    """The jobs of :meth:`Calls.jobs`, named by the rows themselves."""
    return [fetched_job(row, row[TASK_IDENTIFIER], row[QUEUE_NAME]) for row in rows]
