"""The statements the testing helpers run, on the test's own connection.

Built from the constants below and the schema name (validated and quoted by
:func:`~sqlalchemy_graphile._identifiers.quote_identifier`); values are bound parameters.
They only read, so they never disturb the test's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Text, bindparam, text

from .._identifiers import quote_identifier
from ..job import Job

# Every job with its payload (which the `jobs` view leaves out), in the order it was added.
_JOBS = """
select jobs.id, tasks.identifier, job_queues.queue_name, cast(jobs.payload as text),
  jobs.priority, jobs.run_at, jobs.attempts, jobs.max_attempts, jobs.last_error,
  jobs.created_at, jobs.updated_at, jobs.key, jobs.locked_at, jobs.locked_by, jobs.revision,
  cast(jobs.flags as text)
from {s}._private_jobs as jobs
join {s}._private_tasks as tasks on tasks.id = jobs.task_id
left join {s}._private_job_queues as job_queues on job_queues.id = jobs.job_queue_id
{where}
order by jobs.id
"""
_OF_TASK = "where tasks.identifier = cast(:identifier as text)"

_COUNTS = """
select tasks.identifier, count(*)
from {s}._private_jobs as jobs
join {s}._private_tasks as tasks on tasks.id = jobs.task_id
group by tasks.identifier
"""

_INSTALLED = "select to_regclass(cast(:table as text)) is not null"


def schema_installed(connection: Connection, schema: str) -> bool:
    """Whether ``schema`` holds the jobs table."""
    table = f"{quote_identifier(schema)}._private_jobs"
    return bool(connection.execute(text(_INSTALLED), {"table": table}).scalar_one())


def jobs(connection: Connection, schema: str, identifier: str | None) -> list[Job]:
    """Every job (of the task ``identifier``, when given), oldest first."""
    statement = _JOBS.format(s=quote_identifier(schema), where=_OF_TASK if identifier else "")
    query = text(statement)
    parameters: dict[str, Any] = {}
    if identifier:
        query = query.bindparams(bindparam("identifier", type_=Text))
        parameters["identifier"] = identifier
    return [_job(row) for row in connection.execute(query, parameters)]


def job_counts(connection: Connection, schema: str) -> dict[str, int]:
    """How many jobs each task identifier has."""
    statement = text(_COUNTS.format(s=quote_identifier(schema)))
    return {identifier: int(count) for identifier, count in connection.execute(statement)}


def _job(row: Sequence[Any]) -> Job:
    (
        job_id,
        identifier,
        queue_name,
        payload_json,
        priority,
        run_at,
        attempts,
        max_attempts,
        last_error,
        created_at,
        updated_at,
        key,
        locked_at,
        locked_by,
        revision,
        flags_json,
    ) = row
    return Job(
        id=int(job_id),
        task_identifier=identifier,
        queue_name=queue_name,
        payload_json=payload_json,
        priority=priority,
        run_at=run_at,
        attempts=attempts,
        max_attempts=max_attempts,
        last_error=last_error,
        created_at=created_at,
        updated_at=updated_at,
        key=key,
        locked_at=locked_at,
        locked_by=locked_by,
        revision=revision,
        flags=None if flags_json is None else json.loads(flags_json),
    )
