"""The one column list of a job row and the one mapping from such a row to :class:`Job`.

Every statement that returns jobs selects :data:`JOB_COLUMNS` from a row set aliased
``jobs``, first and in this order; statements that also name the task and the queue add
:data:`NAME_COLUMNS` right after (see :data:`NAME_JOINS`). The mapping reads by position,
so it works on asyncpg records and SQLAlchemy rows alike; a statement that reads more than a
job adds its own columns after these and builds a subclass of :class:`Job` that holds them
(``job_from_row(row, ..., job_type=JobDetail, state=...)``).
"""

from __future__ import annotations

import json
from typing import Any, Protocol, TypeVar, overload

from ..job import Job

JOB_COLUMNS = (
    "jobs.id, jobs.job_queue_id, jobs.task_id, cast(jobs.payload as text) as payload,"
    " jobs.priority, jobs.run_at, jobs.attempts, jobs.max_attempts, jobs.last_error,"
    " jobs.created_at, jobs.updated_at, jobs.key, jobs.locked_at, jobs.locked_by,"
    " jobs.revision, cast(jobs.flags as text) as flags"
)

#: The task identifier and the queue name, from :data:`NAME_JOINS`.
NAME_COLUMNS = "tasks.identifier as task_identifier, job_queues.queue_name"

#: Joins that name the task and the queue of ``jobs`` (``{s}``: the quoted schema).
NAME_JOINS = (
    " left join {s}._private_tasks as tasks on tasks.id = jobs.task_id"
    " left join {s}._private_job_queues as job_queues on job_queues.id = jobs.job_queue_id"
)

#: Positions in a row of :data:`JOB_COLUMNS` followed by :data:`NAME_COLUMNS`.
ID, QUEUE_ID, TASK_ID, KEY, REVISION, TASK_IDENTIFIER, QUEUE_NAME = 0, 1, 2, 11, 14, 16, 17
#: Position of the payload's JSON text in a row of :data:`JOB_COLUMNS`.
PAYLOAD = 3


#: A :class:`Job` or a subclass of it that holds more columns.
JobT = TypeVar("JobT", bound=Job)


class Row(Protocol):
    """A row read by position: an asyncpg record, a SQLAlchemy row, a tuple."""

    def __getitem__(self, index: int, /) -> Any: ...


@overload
def job_from_row(row: Row, task_identifier: str, queue_name: str | None) -> Job: ...


@overload
def job_from_row(
    row: Row, task_identifier: str, queue_name: str | None, *, job_type: type[JobT], **extra: Any
) -> JobT: ...


def job_from_row(
    row: Row,
    task_identifier: str,
    queue_name: str | None,
    *,
    job_type: type[Job] = Job,
    **extra: Any,
) -> Job:
    """The :class:`Job` of a row that starts with :data:`JOB_COLUMNS`, with its names; with
    ``job_type``, that subclass of :class:`Job`, given ``extra`` for its own fields."""
    flags = row[15]
    return job_type(
        id=row[0],
        task_identifier=task_identifier,
        queue_name=queue_name,
        payload_json=row[3],
        priority=row[4],
        run_at=row[5],
        attempts=row[6],
        max_attempts=row[7],
        last_error=row[8],
        created_at=row[9],
        updated_at=row[10],
        key=row[11],
        locked_at=row[12],
        locked_by=row[13],
        revision=row[14],
        flags=None if flags is None else json.loads(flags),
        **extra,
    )
