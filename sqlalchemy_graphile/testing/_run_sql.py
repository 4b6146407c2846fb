"""The statements :func:`~sqlalchemy_graphile.testing.run_jobs` runs on the test's own
connection.

Fetching, completing and failing a job use the worker's own statements
(:mod:`sqlalchemy_graphile.worker._sql`), so the lock protocol, the backoff, named queues
and batch payloads behave exactly as under a worker. Those statements number their
parameters for asyncpg (``$1``); :func:`_clause` turns each ``$n`` into the bind parameter
``(:pn)``, so SQLAlchemy renders it for whichever driver the connection uses. Only the
task-id lookup and the "latest run time" below are written here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, CursorResult, TextClause, bindparam, text
from sqlalchemy.types import ARRAY, Text

from .._identifiers import quote_identifier
from ..worker._jobs import FetchedJob, fetched_job
from ..worker._sql import id_list, recorded_ids, statements_for

_NUMBERED = re.compile(r"\$(\d+)")


@cache
def _clause(statement: str) -> TextClause:
    """``statement`` with its numbered parameters as SQLAlchemy bind parameters."""
    return text(_NUMBERED.sub(r"(:p\1)", statement))


def _execute(connection: Connection, statement: str, *args: object) -> CursorResult[Any]:
    parameters = {f"p{number}": value for number, value in enumerate(args, start=1)}
    return connection.execute(_clause(statement), parameters)


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
    statement = statements_for(schema).fetch(1, with_flags=with_flags, app_time=now is not None)
    args: list[object] = [pool_id, id_list(sorted(task_ids))]
    if with_flags:
        args.append(list(forbidden_flags))
    if now is not None:
        args.append(now)
    row = _execute(connection, statement, *args).mappings().first()
    if row is None:
        return None
    return fetched_job(dict(row), task_ids[row["task_id"]])


def complete(connection: Connection, schema: str, pool_id: str, job: FetchedJob) -> int:
    """Delete the completed job and unlock its queue; the number of jobs deleted."""
    statements = statements_for(schema)
    statement = statements.complete_queued_jobs
    if job.queue_id is None:
        statement = statements.complete_jobs
    recorded = _execute(connection, statement, str(job.id), pool_id).scalar_one()
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
    statements = statements_for(schema)
    statement = statements.fail_job if job.queue_id is None else statements.fail_queued_job
    result = _execute(
        connection, statement, job.id, pool_id, message, replacement_payload, permanent
    )
    return len(recorded_ids(result.scalar_one()))
