"""Adding many unkeyed jobs with ``COPY``, run on a synchronous SQLAlchemy ``Connection``.

The rows written are the rows the ``add_jobs`` SQL function would write for the same jobs,
on every adopted schema (ours, Node's, the Rust port's: the table is the same). The function
registers the task identifiers and queue names, sends ``NOTIFY "jobs:insert"`` with the
number of jobs, and inserts each job with these values; everything else is the column's
default, as in the function (``attempts`` 0, ``revision`` 0, ``created_at`` and
``updated_at`` the transaction's ``now()``, no key, no lock, no error):

* ``job_queue_id`` / ``task_id``: the ids of the queue name and task identifier;
* ``payload``: the JSON text, stored as sent;
* ``run_at``: the job's, else the transaction's ``now()`` (read back from the database);
* ``max_attempts`` / ``priority``: the job's, else 25 / 0;
* ``flags``: ``{"flag": true, ...}``, or NULL for no flags.

Ids are taken from the table's own identity sequence before the ``COPY`` (``COPY`` writes
the given value into an identity column, as ``OVERRIDING SYSTEM VALUE`` does), so the ids
of ``jobs[i]`` can be returned at index ``i``.

Three statements in the transaction open on the connection: the names (registered when new,
their ids read back), then ``now()``, the notification and the ids, then the ``COPY``,
which goes through the driver's own connection: asyncpg's ``copy_records_to_table``, psycopg
3's ``cursor.copy`` (sync and async) or psycopg2's ``copy_expert``. The SQLAlchemy
statements run first, so the driver has begun the transaction before the ``COPY`` joins it.
Never commits. A failed ``COPY`` raises SQLAlchemy's ``DBAPIError`` around the driver's
error, as a failed statement would.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, TextClause
from sqlalchemy.exc import DBAPIError
from sqlalchemy.util import await_only

from ._catalog import catalog_for
from ._catalog._jobs import COPY_COLUMNS
from ._job_input import NewJob
from ._job_pairing import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY
from .errors import ConfigurationError, GraphileWorkerError

# --- adding --------------------------------------------------------------------------------

#: How many times the names are read again when another transaction registered one of them
#: while this one waited (each time, it has committed by then).
MAX_NAME_ATTEMPTS = 50


def copy_jobs(connection: Connection, schema: str, jobs: Sequence[NewJob]) -> list[int]:
    """Insert the unkeyed ``jobs`` with ``COPY``; return the id of ``jobs[i]`` at index ``i``.

    Joins the transaction open on ``connection`` (SQLAlchemy begins one on first use) and
    never commits. ``jobs`` must be checked by the caller (no job key, see
    :func:`~sqlalchemy_graphile._job_input.unkeyed_jobs`). Raises
    :class:`ConfigurationError` before any SQL when the driver is not asyncpg, psycopg 3
    or psycopg2.
    """
    write = _writer(connection)
    statements = catalog_for(schema).jobs
    tasks, queues = _register_names(connection, statements.copy_register_names.clause, jobs)
    now, _, ids = connection.execute(statements.copy_prepare.clause, {"count": len(jobs)}).one()
    records = [
        (
            job_id,
            None if job.spec.queue_name is None else queues[job.spec.queue_name],
            tasks[job.identifier],
            job.payload_json,
            DEFAULT_PRIORITY if job.spec.priority is None else job.spec.priority,
            now if job.spec.run_at is None else job.spec.run_at,
            DEFAULT_MAX_ATTEMPTS if job.spec.max_attempts is None else job.spec.max_attempts,
            _flags_json(job.spec.flags),
        )
        for job_id, job in zip(ids, jobs, strict=True)
    ]
    try:
        write(connection, statements.schema, records)
    except Exception as error:
        if not _is_driver_error(connection, error):
            raise
        # As SQLAlchemy raises a failed statement: the driver's error is its ``orig``.
        raise DBAPIError(statements.copy_into_jobs.sql, None, error) from error
    return list(ids)


def _flags_json(flags: tuple[str, ...] | None) -> str | None:
    # jsonb_object_agg(flag, true) over the flags: NULL for none, each flag once.
    if not flags:
        return None
    return json.dumps(dict.fromkeys(flags, True), ensure_ascii=False)


def _register_names(
    connection: Connection, statement: TextClause, jobs: Sequence[NewJob]
) -> tuple[dict[str, int], dict[str, int]]:
    identifiers = {job.identifier for job in jobs}
    queue_names = {job.spec.queue_name for job in jobs if job.spec.queue_name is not None}
    params = {
        "identifiers": json.dumps(sorted(identifiers), ensure_ascii=False),
        "queue_names": json.dumps(sorted(queue_names), ensure_ascii=False),
    }
    for _ in range(MAX_NAME_ATTEMPTS):
        tasks: dict[str, int] = {}
        queues: dict[str, int] = {}
        for is_queue, name_id, name in connection.execute(statement, params):
            (queues if is_queue else tasks)[name] = name_id
        if tasks.keys() == identifiers and queues.keys() == queue_names:
            return tasks, queues
    raise GraphileWorkerError(
        "could not register the task identifiers and queue names of the jobs: another "
        f"transaction deleted them during each of {MAX_NAME_ATTEMPTS} attempts (was a cleanup "
        "running at the same time?)"
    )


def _copy_command(schema: str) -> str:
    return catalog_for(schema).jobs.copy_into_jobs.sql


# --- the COPY on each driver -----------------------------------------------------------------

_Records = list[tuple[Any, ...]]
_Write = Callable[[Connection, str, _Records], None]


def _writer(connection: Connection) -> _Write:
    dialect = connection.dialect
    if dialect.driver == "asyncpg":
        return _copy_asyncpg
    if dialect.driver == "psycopg":
        return _copy_psycopg_async if dialect.is_async else _copy_psycopg
    if dialect.driver == "psycopg2":
        return _copy_psycopg2
    raise ConfigurationError(
        f"copy_jobs needs the asyncpg, psycopg or psycopg2 driver, not {dialect.driver!r}; "
        "use add_jobs with this driver"
    )


def _is_driver_error(connection: Connection, error: Exception) -> bool:
    """Whether ``error`` is the driver's own error for a failed statement or connection."""
    if connection.dialect.driver == "asyncpg":
        import asyncpg

        return isinstance(error, asyncpg.PostgresError | asyncpg.InterfaceError)
    if connection.dialect.driver == "psycopg2":
        import psycopg2

        return isinstance(error, psycopg2.Error)
    import psycopg

    return isinstance(error, psycopg.Error)


def _copy_asyncpg(connection: Connection, schema: str, records: _Records) -> None:
    raw: Any = connection.connection.driver_connection
    await_only(
        raw.copy_records_to_table(
            "_private_jobs", schema_name=schema, columns=COPY_COLUMNS, records=records
        )
    )


def _copy_psycopg(connection: Connection, schema: str, records: _Records) -> None:
    raw: Any = connection.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(_copy_command(schema)) as copy:
        for record in records:
            copy.write_row(record)


def _copy_psycopg_async(connection: Connection, schema: str, records: _Records) -> None:
    raw: Any = connection.connection.driver_connection
    await_only(_write_psycopg_async(raw, _copy_command(schema), records))


async def _write_psycopg_async(raw: Any, statement: str, records: _Records) -> None:
    async with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for record in records:
            await copy.write_row(record)


def _copy_psycopg2(connection: Connection, schema: str, records: _Records) -> None:
    raw: Any = connection.connection.driver_connection
    with raw.cursor() as cursor:
        cursor.copy_expert(_copy_command(schema), io.StringIO(_copy_text(records)))


# COPY's text format: tab-separated columns, one row a line, \N for NULL, and a backslash,
# tab, newline or carriage return inside a value escaped with a backslash.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"


def _copy_text(records: _Records) -> str:
    """The records in COPY's text format (psycopg2 has no row writer of its own)."""
    times: dict[datetime, str] = {}
    lines = []
    for job_id, queue_id, task_id, payload, priority, run_at, max_attempts, flags in records:
        when = times.get(run_at)
        if when is None:
            when = times[run_at] = run_at.isoformat()
        fields = (
            str(job_id),
            _NULL if queue_id is None else str(queue_id),
            str(task_id),
            payload.translate(_ESCAPES),
            str(priority),
            when,
            str(max_attempts),
            _NULL if flags is None else flags.translate(_ESCAPES),
        )
        lines.append("\t".join(fields))
    lines.append("")
    return "\n".join(lines)
