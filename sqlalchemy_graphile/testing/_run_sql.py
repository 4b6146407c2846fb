"""The statements :func:`~sqlalchemy_graphile.testing.run_jobs` runs on the test's own
connection.

Fetching, completing and failing a job use the worker's own statements from the query
catalog, rendered as SQLAlchemy clauses, so the lock protocol, the backoff, named queues
and batch payloads behave exactly as under a worker. Only the task-id lookup and the
"latest run time" below are written here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.types import ARRAY, Text

from .._catalog import catalog_for
from .._catalog._worker import id_list, recorded_ids
from .._identifiers import quote_identifier
from .._store import FetchedJob, fetched_job

_TASK_IDS = """
select tasks.id, tasks.identifier from {s}._private_tasks as tasks
where tasks.identifier = any(:identifiers)
"""

_LATEST_RUN_AT = "select greatest(now(), max(jobs.run_at)) from {s}._private_jobs as jobs"


def task_ids(connection: Connection, schema: str, identifiers: Sequence[str]) -> dict[int, str]:
    """The ids of those of ``identifiers`` that have a task row (no row: no job either).
    Only reads: registering identifiers would write a row other transactions wait on."""
    query = text(_TASK_IDS.format(s=quote_identifier(schema))).bindparams(
        bindparam("identifiers", type_=ARRAY(Text))
    )
    rows = connection.execute(query, {"identifiers": list(identifiers)})
    return {int(task_id): identifier for task_id, identifier in rows}


def latest_run_at(connection: Connection, schema: str) -> datetime:
    """The latest ``run_at`` of any job, or the transaction's ``now()`` if that is later."""
    statement = text(_LATEST_RUN_AT.format(s=quote_identifier(schema)))
    latest: datetime = connection.execute(statement).scalar_one()
    return latest


def fetch(
    connection: Connection,
    schema: str,
    pool_id: str,
    task_ids: dict[int, str],
    *,
    now: datetime | None,
    forbidden_flags: Sequence[str],
) -> FetchedJob | None:
    """Lock the next runnable job of ``task_ids`` (and its named queue) for ``pool_id``,
    counting the attempt, as a worker fetches one; ``None`` if none is runnable. Runnable
    means ``run_at`` at or before ``now`` (default: the transaction's ``now()``)."""
    with_flags = bool(forbidden_flags)
    statement = catalog_for(schema).worker.fetch(1, with_flags=with_flags, app_time=now is not None)
    values: dict[str, object] = {"pool_id": pool_id, "task_ids": id_list(sorted(task_ids))}
    if with_flags:
        values["forbidden_flags"] = list(forbidden_flags)
    if now is not None:
        values["now"] = now
    row = connection.execute(statement.clause, values).first()
    if row is None:
        return None
    return fetched_job(row, task_ids[row[2]], row[16])


def complete(connection: Connection, schema: str, pool_id: str, job: FetchedJob) -> int:
    """Delete the completed job and unlock its queue; the number of jobs deleted."""
    statements = catalog_for(schema).worker
    statement = statements.complete_queued_jobs
    if job.queue_id is None:
        statement = statements.complete_jobs
    values = {"job_ids": str(job.id), "pool_id": pool_id}
    recorded = connection.execute(statement.clause, values).scalar_one()
    return len(recorded_ids(recorded))


def fail(
    connection: Connection,
    schema: str,
    pool_id: str,
    job: FetchedJob,
    *,
    message: str,
    replacement_payload: str | None,
    permanent: bool,
) -> int:
    """Record the failure, schedule the retry with backoff (or use up the attempts when
    ``permanent``), unlock the job and its queue; the number of jobs updated."""
    statements = catalog_for(schema).worker
    statement = statements.fail_job if job.queue_id is None else statements.fail_queued_job
    values = {
        "job_id": job.id,
        "pool_id": pool_id,
        "message": message,
        "payload": replacement_payload,
        "permanent": permanent,
    }
    return len(recorded_ids(connection.execute(statement.clause, values).scalar_one()))
