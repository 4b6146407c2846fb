"""The add and admin logic, written once for both drivers.

The statements come from the query catalog (``catalog_for(schema).jobs``). Adding jobs may
take more than one statement: a job whose key was taken by a job locked in the middle of the
call is added again, and tasks or queues the statement created are named by a lookup. That
logic is written without I/O, as a :data:`Routine`: a generator that yields each statement
with its values and is sent the rows it returned. :func:`run_routine` runs a routine on a
synchronous SQLAlchemy ``Connection`` (:class:`JobHelpers`, and through ``run_sync``
:class:`AsyncJobHelpers` and :class:`WorkerUtils` on a psycopg engine); the worker's job
store runs the same routines on an asyncpg connection
(:mod:`~sqlalchemy_graphile._store._asyncpg`), and so does :class:`WorkerUtils` on an
asyncpg engine (:mod:`~sqlalchemy_graphile._asyncpg_adds`).

The functions taking a ``Connection`` join the transaction open on it (SQLAlchemy begins one
on first use) and never commit. This module imports neither SQLAlchemy nor a driver, so the
worker can use it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Generator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from ._catalog import catalog_for
from ._catalog._columns import (
    ID,
    KEY,
    QUEUE_ID,
    QUEUE_NAME,
    REVISION,
    TASK_ID,
    TASK_IDENTIFIER,
    Row,
    job_from_row,
)
from ._catalog._jobs import CLEANUP_TASKS, JobStatements
from ._catalog._statement import Call, Statement
from ._catalog._worker import id_list
from ._job_input import DEFAULT_SPEC, NewJob
from ._job_pairing import StoredRow, pair_rows
from .errors import GraphileWorkerError
from .job import Job
from .job_spec import JobKeyMode, JobSpec

if TYPE_CHECKING:
    from sqlalchemy import Connection

T = TypeVar("T")
R = TypeVar("R", bound=StoredRow)

#: How many times one add is re-run, in the same transaction, when its key was taken by a
#: job that got locked in the middle of the call (the database then returns no row).
MAX_ADD_ATTEMPTS = 50

#: Database logic without I/O: a generator that yields each :data:`Call` (a statement with
#: its values), is sent the rows it returned, and returns its result. Run it with
#: :func:`run_routine` (SQLAlchemy) or the asyncpg store's runner; both run every call on
#: one connection, in one transaction.
Routine = Generator[Call, Sequence[Row], T]


def run_routine(connection: Connection, routine: Routine[T]) -> T:
    """Run ``routine`` on a synchronous SQLAlchemy ``connection``, in the transaction open
    on it; raises what the routine or the driver raises."""
    rows: Sequence[Row] | None = None
    while True:
        try:
            statement, values = routine.send(rows)  # type: ignore[arg-type]  # None starts it
        except StopIteration as finished:
            result: T = finished.value
            return result
        rows = connection.execute(statement.clause, values).all()


def _statements(schema: str) -> JobStatements:
    return catalog_for(schema).jobs


# --- rows to Job ---------------------------------------------------------------------------


class _StoredValues(NamedTuple):
    """The id of a returned row and the values pairing compares: what a bulk add that
    returns ids reads instead of building a :class:`Job`."""

    id: int
    task_identifier: str
    queue_name: str | None
    payload_json: str
    priority: int
    run_at: datetime
    max_attempts: int
    key: str | None
    flags: dict[str, bool] | None


def _stored_values(row: Row, identifier: str, queue_name: str | None) -> _StoredValues:
    flags_json = row[15]
    return _StoredValues(
        row[ID],
        identifier,
        queue_name,
        row[3],
        row[4],
        row[5],
        row[7],
        row[KEY],
        None if flags_json is None else json.loads(flags_json),
    )


def _to_jobs(
    statements: JobStatements,
    rows: Sequence[Row],
    known: Sequence[tuple[str | None, str | None] | None] | None = None,
) -> Routine[list[Job]]:
    """Build :class:`Job` objects, with names from the joins, else from ``known``
    (see :func:`_named`)."""
    return (yield from _named(statements, rows, known, job_from_row))


def _named(
    statements: JobStatements,
    rows: Sequence[Row],
    known: Sequence[tuple[str | None, str | None] | None] | None,
    build: Callable[[Row, str, str | None], R],
) -> Routine[list[R]]:
    """``build(row, task identifier, queue name)`` for each row, with names from the joins,
    else from ``known``.

    A task or queue row created during the statement (by the SQL function itself, or by a
    transaction that committed while the statement waited) is not visible to the statement's
    joins. ``known[i]`` gives the names row ``i`` is certain to carry (the ones it was added
    with); names still missing after that are read by one more statement, which sees them.
    """
    identifiers: list[str | None] = []
    queue_names: list[str | None] = []
    for row, certain in zip(rows, known or [None] * len(rows), strict=True):
        identifier, queue_name = row[TASK_IDENTIFIER], row[QUEUE_NAME]
        if certain is not None:
            if identifier is None:
                identifier = certain[0]
            if queue_name is None and row[QUEUE_ID] is not None:
                queue_name = certain[1]
        identifiers.append(identifier)
        queue_names.append(queue_name)
    missing_tasks = [
        row[TASK_ID] for row, name in zip(rows, identifiers, strict=True) if name is None
    ]
    missing_queues = [
        row[QUEUE_ID]
        for row, name in zip(rows, queue_names, strict=True)
        if name is None and row[QUEUE_ID] is not None
    ]
    tasks = yield from _lookup(statements.task_names, missing_tasks)
    queues = yield from _lookup(statements.queue_names, missing_queues)
    built = []
    for row, identifier, queue_name in zip(rows, identifiers, queue_names, strict=True):
        if identifier is None:
            identifier = _name(tasks, row[TASK_ID], row[ID], "task")
        if queue_name is None and row[QUEUE_ID] is not None:
            queue_name = _name(queues, row[QUEUE_ID], row[ID], "queue")
        built.append(build(row, identifier, queue_name))
    return built


def _name(names: dict[int, str], name_id: int, job_id: int, what: str) -> str:
    if name_id not in names:
        raise GraphileWorkerError(
            f"job {job_id} refers to {what} id {name_id}, which does not exist; was a cleanup "
            "(GC_TASK_IDENTIFIERS / GC_JOB_QUEUES) running at the same time?"
        )
    return names[name_id]


def _lookup(statement: Statement, ids: list[int]) -> Routine[dict[int, str]]:
    if not ids:
        return {}
    rows = yield statement, {"ids": id_list(sorted(set(ids)))}
    return {row[0]: row[1] for row in rows}


# --- adding jobs ---------------------------------------------------------------------------


def _add_job_params(job: NewJob) -> dict[str, Any]:
    spec = job.spec
    return {
        "identifier": job.identifier,
        "payload": job.payload_json,
        "queue_name": spec.queue_name,
        "run_at": spec.run_at,
        "max_attempts": spec.max_attempts,
        "job_key": spec.job_key,
        "priority": spec.priority,
        "flags": job.flags,
        "job_key_mode": None if spec.job_key_mode is None else spec.job_key_mode.value,
    }


def add_job(connection: Connection, schema: str, job: NewJob) -> Job:
    """Add one job on a SQLAlchemy ``connection``; return the inserted or updated row
    (:func:`adding_job`)."""
    return run_routine(connection, adding_job(_statements(schema), job))


def adding_job(statements: JobStatements, job: NewJob) -> Routine[Job]:
    """Add one job; return the inserted or updated row.

    In the ``REPLACE`` and ``PRESERVE_RUN_AT`` modes (and without a key) this is
    :func:`add_jobs` with one job, as the ``add_job`` SQL function itself does; calling
    ``add_jobs`` directly keeps a lost race a missing row on every schema (the Rust port's
    ``add_job`` raises ``GWNOR`` instead, which would abort the caller's transaction).
    ``UNSAFE_DEDUPE`` has no bulk form: the ``add_job`` SQL function runs it. When the key
    belongs to a job that a worker locks in the middle of the call, no row comes back
    (Graphile Worker's documented race); the call is then repeated in the same transaction,
    where it retires the locked job and inserts a new one.
    """
    mode = job.spec.job_key_mode
    if mode is not JobKeyMode.UNSAFE_DEDUPE:
        preserve_run_at = mode is JobKeyMode.PRESERVE_RUN_AT
        return (yield from adding_jobs(statements, [job], preserve_run_at))[0]
    params = _add_job_params(job)
    for _ in range(MAX_ADD_ATTEMPTS):
        (row,) = yield statements.add_job, params
        if row[ID] is not None:
            # This may be an older job of another task; revision 0 means ours.
            known = (job.identifier, job.spec.queue_name) if row[REVISION] == 0 else None
            return (yield from _to_jobs(statements, [row], [known]))[0]
    raise _contention(job.spec.job_key)


@functools.lru_cache(maxsize=256)
def _default_spec_head(identifier: str) -> str:
    """The start of :func:`_spec_json` for a job with the default spec."""
    return _spec_head(identifier, DEFAULT_SPEC, None)


def _spec_json(job: NewJob) -> str:
    spec = job.spec
    if spec is DEFAULT_SPEC:
        head = _default_spec_head(job.identifier)
    else:
        head = _spec_head(job.identifier, spec, job.flags)
    # The payload is inserted as the exact text we encoded, so it is stored byte for byte.
    return head + ',"payload":' + job.payload_json + "}"


def _spec_head(identifier: str, spec: JobSpec, flags: list[str] | None) -> str:
    run_at = None if spec.run_at is None else spec.run_at.astimezone(UTC).isoformat()
    fields = {
        "identifier": identifier,
        "queue_name": spec.queue_name,
        "run_at": run_at,
        "max_attempts": spec.max_attempts,
        "job_key": spec.job_key,
        "priority": spec.priority,
        "flags": flags,
    }
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))[:-1]


def add_jobs(
    connection: Connection, schema: str, jobs: Sequence[NewJob], preserve_run_at: bool
) -> list[Job]:
    """Add several jobs on a SQLAlchemy ``connection``; return the job for ``jobs[i]`` at
    index ``i`` (:func:`adding_jobs`)."""
    return run_routine(connection, adding_jobs(_statements(schema), jobs, preserve_run_at))


def adding_jobs(
    statements: JobStatements, jobs: Sequence[NewJob], preserve_run_at: bool
) -> Routine[list[Job]]:
    """Add several jobs with one ``add_jobs`` call; return the job for ``jobs[i]`` at index ``i``.

    The rows are paired with the jobs by content, not by the order the SQL function returned
    them in (see :mod:`~sqlalchemy_graphile._job_pairing`). Jobs whose key was taken by a job
    locked in the middle of the call come back without a row; they alone are added again, in
    the same transaction (see :func:`adding_job`).
    """
    return (
        yield from _adding_in_bulk(
            statements, statements.add_jobs, jobs, preserve_run_at, job_from_row
        )
    )


def adding_job_ids(
    statements: JobStatements, jobs: Sequence[NewJob], preserve_run_at: bool
) -> Routine[list[int]]:
    """:func:`adding_jobs`, returning the id of the job for ``jobs[i]`` at index ``i`` and
    building no :class:`Job`: the same call of the SQL function, pairing and retries, with
    only the columns pairing reads (``JobStatements.add_job_ids``)."""
    rows = yield from _adding_in_bulk(
        statements, statements.add_job_ids, jobs, preserve_run_at, _stored_values
    )
    return [row.id for row in rows]


def _adding_in_bulk(
    statements: JobStatements,
    statement: Statement,
    jobs: Sequence[NewJob],
    preserve_run_at: bool,
    build: Callable[[Row, str, str | None], R],
) -> Routine[list[R]]:
    results: list[R | None] = [None] * len(jobs)
    pending = list(range(len(jobs)))
    for _ in range(MAX_ADD_ATTEMPTS):
        if not pending:
            break
        batch = [jobs[i] for i in pending]
        specs = "[" + ",".join(_spec_json(job) for job in batch) + "]"
        rows = yield statement, {"specs": specs, "preserve_run_at": preserve_run_at}
        known = _names_of_new_rows(batch, rows)
        paired = pair_rows(batch, (yield from _named(statements, rows, known, build)))
        for i, row in zip(pending, paired, strict=True):
            results[i] = row
        pending = [i for i, row in zip(pending, paired, strict=True) if row is None]
    if pending:
        raise _contention(jobs[pending[0]].spec.job_key)
    return [row for row in results if row is not None]


def _names_of_new_rows(
    jobs: Sequence[NewJob], rows: Sequence[Row]
) -> list[tuple[str | None, str | None]]:
    """The task identifier and queue name of each row, where they are certain without a query.

    The rows must be named before they can be paired with ``jobs``. The joins name tasks
    and queues that existed before the statement; a keyed row holds its job's names; and
    when exactly one task (or queue) id is still unnamed while exactly one name sent is
    unaccounted for, that is its name. Whatever is left (several names new at once) is read
    by :func:`_named` with one more statement.
    """
    by_key = {job.spec.job_key: job for job in jobs if job.spec.job_key is not None}
    tasks: dict[int, str] = {}
    queues: dict[int, str] = {}
    for row in rows:
        job = by_key.get(row[KEY])
        identifier = job.identifier if job else row[TASK_IDENTIFIER]
        queue_name = job.spec.queue_name if job else row[QUEUE_NAME]
        if identifier is not None:
            tasks[row[TASK_ID]] = identifier
        if queue_name is not None and row[QUEUE_ID] is not None:
            queues[row[QUEUE_ID]] = queue_name
    _name_by_elimination(tasks, {row[TASK_ID] for row in rows}, {job.identifier for job in jobs})
    _name_by_elimination(
        queues,
        {row[QUEUE_ID] for row in rows if row[QUEUE_ID] is not None},
        {job.spec.queue_name for job in jobs if job.spec.queue_name is not None},
    )
    return [(tasks.get(row[TASK_ID]), queues.get(row[QUEUE_ID])) for row in rows]


def _name_by_elimination(names: dict[int, str], ids: set[int], sent: set[str]) -> None:
    unnamed = ids - names.keys()
    unclaimed = sent - set(names.values())
    if len(unnamed) == 1 and len(unclaimed) == 1:
        names[unnamed.pop()] = unclaimed.pop()


def _contention(key: str | None) -> GraphileWorkerError:
    return GraphileWorkerError(
        f"could not add the job with key {key!r}: its key was taken by a job that got locked "
        f"during each of {MAX_ADD_ATTEMPTS} attempts"
    )


# --- administration ------------------------------------------------------------------------


def remove_job(connection: Connection, schema: str, job_key: str) -> Job | None:
    """Remove the job with ``job_key`` (``remove_job`` SQL function).

    A job nobody runs is deleted; a locked job loses its key and will not be retried. Returns
    that job, or ``None`` when no job has the key.
    """
    statements = _statements(schema)
    row = connection.execute(statements.remove_job.clause, {"job_key": job_key}).one()
    if row[ID] is None:
        return None
    return run_routine(connection, _to_jobs(statements, [row]))[0]


def complete_jobs(connection: Connection, schema: str, job_ids: list[int]) -> list[Job]:
    """Delete the listed jobs that are not locked; return the deleted rows (by id)."""
    statements = _statements(schema)
    rows = connection.execute(statements.complete_jobs.clause, {"job_ids": job_ids}).all()
    return run_routine(connection, _to_jobs(statements, rows))


def permanently_fail_jobs(
    connection: Connection, schema: str, job_ids: list[int], reason: str | None
) -> list[Job]:
    """Mark the listed unlocked jobs as permanently failed; return the updated rows."""
    statements = _statements(schema)
    rows = connection.execute(
        statements.permanently_fail_jobs.clause, {"job_ids": job_ids, "error_message": reason}
    ).all()
    return run_routine(connection, _to_jobs(statements, rows))


def reschedule_jobs(
    connection: Connection,
    schema: str,
    job_ids: list[int],
    *,
    run_at: datetime | None,
    priority: int | None,
    attempts: int | None,
    max_attempts: int | None,
) -> list[Job]:
    """Overwrite the given fields of the listed unlocked jobs; return the updated rows."""
    statements = _statements(schema)
    rows = connection.execute(
        statements.reschedule_jobs.clause,
        {
            "job_ids": job_ids,
            "run_at": run_at,
            "priority": priority,
            "attempts": attempts,
            "max_attempts": max_attempts,
        },
    ).all()
    return run_routine(connection, _to_jobs(statements, rows))


def force_unlock_workers(connection: Connection, schema: str, worker_ids: list[str]) -> None:
    """Unlock every job and queue locked by one of ``worker_ids``."""
    statement = _statements(schema).force_unlock_workers
    connection.execute(statement.clause, {"worker_ids": worker_ids})


def cleanup(
    connection: Connection, schema: str, tasks: frozenset[str], keep: list[str]
) -> dict[str, int]:
    """Run the named cleanup tasks in :data:`CLEANUP_TASKS` order; return rows deleted by each."""
    statements = _statements(schema).cleanup
    counts = {}
    for name in CLEANUP_TASKS:
        if name in tasks:
            params = {"keep": keep} if name == "GC_TASK_IDENTIFIERS" else {}
            result = connection.execute(statements[name].clause, params)
            counts[name] = result.rowcount
    return counts
