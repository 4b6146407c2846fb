"""What the testing helpers read, on the test's own connection: statements from the query
catalog, which only read, so they never disturb the test's transaction."""

from __future__ import annotations

from sqlalchemy import Connection

from .._catalog import catalog_for
from .._catalog._columns import QUEUE_NAME, TASK_IDENTIFIER, job_from_row
from ..job import Job


def schema_installed(connection: Connection, schema: str) -> bool:
    """Whether ``schema`` holds the jobs table."""
    statement = catalog_for(schema).reads.schema_installed
    return bool(connection.execute(statement.clause).scalar_one())


def jobs(connection: Connection, schema: str, identifier: str | None) -> list[Job]:
    """Every job (of the task ``identifier``, when given), oldest first."""
    reads = catalog_for(schema).reads
    if identifier:
        rows = connection.execute(reads.jobs_of_task.clause, {"identifier": identifier})
    else:
        rows = connection.execute(reads.jobs.clause)
    return [job_from_row(row, row[TASK_IDENTIFIER], row[QUEUE_NAME]) for row in rows]


def job_counts(connection: Connection, schema: str) -> dict[str, int]:
    """How many jobs each task identifier has."""
    rows = connection.execute(catalog_for(schema).reads.job_counts.clause)
    return {identifier: int(count) for identifier, count in rows}
