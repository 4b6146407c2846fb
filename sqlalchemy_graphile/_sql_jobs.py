"""The SQL behind adding and administering jobs, run on a synchronous SQLAlchemy ``Connection``.

Statements are built from the constants below and the schema name, validated and quoted by
:func:`~sqlalchemy_graphile._identifiers.quote_identifier`; every value travels as a bound
parameter. Parameters are wrapped in ``CAST(:name AS type)`` and given explicit SQLAlchemy
types so that asyncpg, psycopg 3 and psycopg2 all bind them the same way.

Each function joins the transaction open on the connection (SQLAlchemy begins one on first
use) and never commits. The async callers run them through ``run_sync``, so this is the one
implementation of the add and admin logic.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import BigInteger, Boolean, Connection, DateTime, Integer, Row, Text, bindparam
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.expression import text
from sqlalchemy.types import ARRAY

from ._identifiers import quote_identifier
from ._job_input import DEFAULT_SPEC, NewJob
from ._job_pairing import StoredRow, pair_rows
from .errors import GraphileWorkerError
from .job import Job
from .job_spec import JobKeyMode, JobSpec

R = TypeVar("R", bound=StoredRow)

#: How many times one add is re-run, in the same transaction, when its key was taken by a
#: job that got locked in the middle of the call (the database then returns no row).
MAX_ADD_ATTEMPTS = 50

#: The cleanup tasks, in the order they always run.
CLEANUP_TASKS = ("DELETE_PERMAFAILED_JOBS", "GC_TASK_IDENTIFIERS", "GC_JOB_QUEUES")

# Every statement that returns jobs selects these columns from a row set aliased `jobs`,
# resolving the task identifier and queue name with the two joins below.
_JOB_COLUMNS = """
  jobs.id, jobs.job_queue_id, jobs.task_id, cast(jobs.payload as text) as payload_json,
  jobs.priority, jobs.run_at, jobs.attempts, jobs.max_attempts, jobs.last_error,
  jobs.created_at, jobs.updated_at, jobs.key, jobs.locked_at, jobs.locked_by,
  jobs.revision, cast(jobs.flags as text) as flags_json,
  tasks.identifier as task_identifier, job_queues.queue_name
"""
_NAME_JOINS = """
  left join {s}._private_tasks as tasks on tasks.id = jobs.task_id
  left join {s}._private_job_queues as job_queues on job_queues.id = jobs.job_queue_id
"""

_ADD_JOB = (
    "select"
    + _JOB_COLUMNS
    + """
from {s}.add_job(
  identifier => cast(:identifier as text),
  payload => cast(:payload as json),
  queue_name => cast(:queue_name as text),
  run_at => cast(:run_at as timestamptz),
  max_attempts => cast(:max_attempts as integer),
  job_key => cast(:job_key as text),
  priority => cast(:priority as integer),
  flags => cast(:flags as text[]),
  job_key_mode => cast(:job_key_mode as text)
) as jobs
"""
    + _NAME_JOINS
)

# The specs travel as one JSON array, turned into job_spec values in input order. The rows
# come back in an order only our own function body promises, so they are paired with the
# jobs by content (see _job_pairing).
_ADD_JOBS = (
    "select"
    + _JOB_COLUMNS
    + """
from {s}.add_jobs(
  array(
    select cast(row(spec.identifier, spec.payload, spec.queue_name, spec.run_at,
                    spec.max_attempts, spec.job_key, spec.priority, spec.flags) as {s}.job_spec)
      from json_populate_recordset(cast(null as {s}.job_spec), cast(:specs as json))
           with ordinality as spec (identifier, payload, queue_name, run_at, max_attempts,
                                    job_key, priority, flags, position)
     order by spec.position
  ),
  cast(:preserve_run_at as boolean)
) as jobs
"""
    + _NAME_JOINS
)

# The same call for a bulk add that returns ids: the columns pairing reads, at the positions
# of _JOB_COLUMNS, and NULL for the others, which the server then neither formats nor sends.
_ADD_JOB_IDS = _ADD_JOBS.replace(
    _JOB_COLUMNS,
    """
  jobs.id, jobs.job_queue_id, jobs.task_id, cast(jobs.payload as text) as payload_json,
  jobs.priority, jobs.run_at, null, jobs.max_attempts, null,
  null, null, jobs.key, null, null,
  null, cast(jobs.flags as text) as flags_json,
  tasks.identifier as task_identifier, job_queues.queue_name
""",
)

_REMOVE_JOB = (
    "select" + _JOB_COLUMNS + "from {s}.remove_job(cast(:job_key as text)) as jobs" + _NAME_JOINS
)

_COMPLETE_JOBS = (
    "select"
    + _JOB_COLUMNS
    + "from {s}.complete_jobs(cast(:job_ids as bigint[])) as jobs"
    + _NAME_JOINS
    + "order by jobs.id"
)

_PERMANENTLY_FAIL_JOBS = (
    "select"
    + _JOB_COLUMNS
    + """
from {s}.permanently_fail_jobs(cast(:job_ids as bigint[]), cast(:error_message as text)) as jobs
"""
    + _NAME_JOINS
    + "order by jobs.id"
)

_RESCHEDULE_JOBS = (
    "select"
    + _JOB_COLUMNS
    + """
from {s}.reschedule_jobs(
  cast(:job_ids as bigint[]),
  run_at => cast(:run_at as timestamptz),
  priority => cast(:priority as integer),
  attempts => cast(:attempts as integer),
  max_attempts => cast(:max_attempts as integer)
) as jobs
"""
    + _NAME_JOINS
    + "order by jobs.id"
)

_FORCE_UNLOCK_WORKERS = "select {s}.force_unlock_workers(cast(:worker_ids as text[]))"

_CLEANUP = {
    "DELETE_PERMAFAILED_JOBS": """
delete from {s}._private_jobs as jobs
 where jobs.attempts = jobs.max_attempts
   and jobs.locked_at is null
""",
    "GC_TASK_IDENTIFIERS": """
delete from {s}._private_tasks as tasks
 where not exists (select 1 from {s}._private_jobs as jobs where jobs.task_id = tasks.id)
   and tasks.identifier <> all(cast(:keep as text[]))
""",
    "GC_JOB_QUEUES": """
delete from {s}._private_job_queues as job_queues
 where job_queues.locked_at is null
   and not exists (
     select 1 from {s}._private_jobs as jobs where jobs.job_queue_id = job_queues.id
   )
""",
}

_TASK_NAMES = (
    "select id, identifier from {s}._private_tasks where id = any(cast(:ids as integer[]))"
)
_QUEUE_NAMES = (
    "select id, queue_name from {s}._private_job_queues where id = any(cast(:ids as integer[]))"
)

# A bound parameter in a template: `:name` not preceded by another colon or a word character.
_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")
_TZ = DateTime(timezone=True)
_TYPES: Mapping[str, Any] = {
    "identifier": Text(),
    "payload": Text(),
    "queue_name": Text(),
    "run_at": _TZ,
    "max_attempts": Integer(),
    "job_key": Text(),
    "priority": Integer(),
    "flags": ARRAY(Text()),
    "job_key_mode": Text(),
    "specs": Text(),
    "preserve_run_at": Boolean(),
    "job_ids": ARRAY(BigInteger()),
    "error_message": Text(),
    "attempts": Integer(),
    "worker_ids": ARRAY(Text()),
    "keep": ARRAY(Text()),
    "ids": ARRAY(Integer()),
}


@functools.lru_cache(maxsize=256)
def _statement(template: str, schema: str) -> TextClause:
    statement = text(template.format(s=quote_identifier(schema)))
    names = dict.fromkeys(_PARAMETER.findall(template))
    return statement.bindparams(*(bindparam(name, type_=_TYPES[name]) for name in names))


# --- rows to Job ---------------------------------------------------------------------------


def _job(row: Sequence[Any], identifier: str, queue_name: str | None) -> Job:
    # Positional: the columns of _JOB_COLUMNS, in order (faster than by name).
    (
        job_id,
        _queue_id,
        _task_id,
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
        _identifier,
        _queue_name,
    ) = row
    return Job(
        id=job_id,
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


# Positions in _JOB_COLUMNS.
_QUEUE_ID, _TASK_ID, _IDENTIFIER, _QUEUE_NAME = 1, 2, 16, 17


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


def _stored_values(row: Sequence[Any], identifier: str, queue_name: str | None) -> _StoredValues:
    flags_json = row[15]
    return _StoredValues(
        row[0],
        identifier,
        queue_name,
        row[3],
        row[4],
        row[5],
        row[7],
        row[11],
        None if flags_json is None else json.loads(flags_json),
    )


def _to_jobs(
    connection: Connection,
    schema: str,
    rows: Sequence[Row[Any]],
    known: Sequence[tuple[str | None, str | None] | None] | None = None,
) -> list[Job]:
    """Build :class:`Job` objects, with names from the joins, else from ``known``
    (see :func:`_named`)."""
    return _named(connection, schema, rows, known, _job)


def _named(
    connection: Connection,
    schema: str,
    rows: Sequence[Row[Any]],
    known: Sequence[tuple[str | None, str | None] | None] | None,
    build: Callable[[Sequence[Any], str, str | None], R],
) -> list[R]:
    """``build(row, task identifier, queue name)`` for each row, with names from the joins,
    else from ``known``.

    A task or queue row created during the statement (by the SQL function itself, or by a
    transaction that committed while the statement waited) is not visible to the statement's
    joins. ``known[i]`` gives the names row ``i`` is certain to carry (the ones it was added
    with); names still missing after that are read by one more statement, which sees them.
    """
    values = [tuple(row) for row in rows]
    identifiers: list[str | None] = []
    queue_names: list[str | None] = []
    for row, certain in zip(values, known or [None] * len(values), strict=True):
        identifier, queue_name = row[_IDENTIFIER], row[_QUEUE_NAME]
        if certain is not None:
            if identifier is None:
                identifier = certain[0]
            if queue_name is None and row[_QUEUE_ID] is not None:
                queue_name = certain[1]
        identifiers.append(identifier)
        queue_names.append(queue_name)
    missing_tasks = [
        row[_TASK_ID] for row, name in zip(values, identifiers, strict=True) if name is None
    ]
    missing_queues = [
        row[_QUEUE_ID]
        for row, name in zip(values, queue_names, strict=True)
        if name is None and row[_QUEUE_ID] is not None
    ]
    tasks = _lookup(connection, schema, _TASK_NAMES, missing_tasks)
    queues = _lookup(connection, schema, _QUEUE_NAMES, missing_queues)
    built = []
    for row, identifier, queue_name in zip(values, identifiers, queue_names, strict=True):
        if identifier is None:
            identifier = _name(tasks, row[_TASK_ID], row[0], "task")
        if queue_name is None and row[_QUEUE_ID] is not None:
            queue_name = _name(queues, row[_QUEUE_ID], row[0], "queue")
        built.append(build(row, identifier, queue_name))
    return built


def _name(names: dict[int, str], name_id: int, job_id: int, what: str) -> str:
    if name_id not in names:
        raise GraphileWorkerError(
            f"job {job_id} refers to {what} id {name_id}, which does not exist; was a cleanup "
            "(GC_TASK_IDENTIFIERS / GC_JOB_QUEUES) running at the same time?"
        )
    return names[name_id]


def _lookup(connection: Connection, schema: str, template: str, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    result = connection.execute(_statement(template, schema), {"ids": sorted(set(ids))})
    return {row[0]: row[1] for row in result}


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
        return add_jobs(connection, schema, [job], mode is JobKeyMode.PRESERVE_RUN_AT)[0]
    statement = _statement(_ADD_JOB, schema)
    params = _add_job_params(job)
    for _ in range(MAX_ADD_ATTEMPTS):
        row = connection.execute(statement, params).one()
        if row.id is not None:
            # This may be an older job of another task; revision 0 means ours.
            known = (job.identifier, job.spec.queue_name) if row.revision == 0 else None
            return _to_jobs(connection, schema, [row], [known])[0]
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
    """Add several jobs with one ``add_jobs`` call; return the job for ``jobs[i]`` at index ``i``.

    The rows are paired with the jobs by content, not by the order the SQL function returned
    them in (see :mod:`~sqlalchemy_graphile._job_pairing`). Jobs whose key was taken by a job
    locked in the middle of the call come back without a row; they alone are added again, in
    the same transaction (see :func:`add_job`).
    """
    return _add_in_bulk(connection, schema, _ADD_JOBS, jobs, preserve_run_at, _job)


def add_job_ids(
    connection: Connection, schema: str, jobs: Sequence[NewJob], preserve_run_at: bool
) -> list[int]:
    """:func:`add_jobs`, returning the id of the job for ``jobs[i]`` at index ``i`` and
    building no :class:`Job`: the same call of the SQL function, pairing and retries, with
    only the columns pairing reads (:data:`_ADD_JOB_IDS`)."""
    return [
        row.id
        for row in _add_in_bulk(
            connection, schema, _ADD_JOB_IDS, jobs, preserve_run_at, _stored_values
        )
    ]


def _add_in_bulk(
    connection: Connection,
    schema: str,
    template: str,
    jobs: Sequence[NewJob],
    preserve_run_at: bool,
    build: Callable[[Sequence[Any], str, str | None], R],
) -> list[R]:
    results: list[R | None] = [None] * len(jobs)
    pending = list(range(len(jobs)))
    statement = _statement(template, schema)
    for _ in range(MAX_ADD_ATTEMPTS):
        if not pending:
            break
        batch = [jobs[i] for i in pending]
        specs = "[" + ",".join(_spec_json(job) for job in batch) + "]"
        rows = connection.execute(
            statement, {"specs": specs, "preserve_run_at": preserve_run_at}
        ).all()
        known = _names_of_new_rows(batch, rows)
        paired = pair_rows(batch, _named(connection, schema, rows, known, build))
        for i, row in zip(pending, paired, strict=True):
            results[i] = row
        pending = [i for i, row in zip(pending, paired, strict=True) if row is None]
    if pending:
        raise _contention(jobs[pending[0]].spec.job_key)
    return [row for row in results if row is not None]


def _names_of_new_rows(
    jobs: Sequence[NewJob], rows: Sequence[Row[Any]]
) -> list[tuple[str | None, str | None]]:
    """The task identifier and queue name of each row, where they are certain without a query.

    The rows must be named before they can be paired with ``jobs``. The joins name tasks
    and queues that existed before the statement; a keyed row holds its job's names; and
    when exactly one task (or queue) id is still unnamed while exactly one name sent is
    unaccounted for, that is its name. Whatever is left (several names new at once) is read
    by :func:`_to_jobs` with one more statement.
    """
    by_key = {job.spec.job_key: job for job in jobs if job.spec.job_key is not None}
    tasks: dict[int, str] = {}
    queues: dict[int, str] = {}
    for row in rows:
        job = by_key.get(row.key)
        identifier = job.identifier if job else row[_IDENTIFIER]
        queue_name = job.spec.queue_name if job else row[_QUEUE_NAME]
        if identifier is not None:
            tasks[row[_TASK_ID]] = identifier
        if queue_name is not None and row[_QUEUE_ID] is not None:
            queues[row[_QUEUE_ID]] = queue_name
    _name_by_elimination(tasks, {row[_TASK_ID] for row in rows}, {job.identifier for job in jobs})
    _name_by_elimination(
        queues,
        {row[_QUEUE_ID] for row in rows if row[_QUEUE_ID] is not None},
        {job.spec.queue_name for job in jobs if job.spec.queue_name is not None},
    )
    return [(tasks.get(row[_TASK_ID]), queues.get(row[_QUEUE_ID])) for row in rows]


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
    row = connection.execute(_statement(_REMOVE_JOB, schema), {"job_key": job_key}).one()
    if row.id is None:
        return None
    return _to_jobs(connection, schema, [row])[0]


def complete_jobs(connection: Connection, schema: str, job_ids: list[int]) -> list[Job]:
    """Delete the listed jobs that are not locked; return the deleted rows (by id)."""
    rows = connection.execute(_statement(_COMPLETE_JOBS, schema), {"job_ids": job_ids}).all()
    return _to_jobs(connection, schema, rows)


def permanently_fail_jobs(
    connection: Connection, schema: str, job_ids: list[int], reason: str | None
) -> list[Job]:
    """Mark the listed unlocked jobs as permanently failed; return the updated rows."""
    rows = connection.execute(
        _statement(_PERMANENTLY_FAIL_JOBS, schema),
        {"job_ids": job_ids, "error_message": reason},
    ).all()
    return _to_jobs(connection, schema, rows)


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
    rows = connection.execute(
        _statement(_RESCHEDULE_JOBS, schema),
        {
            "job_ids": job_ids,
            "run_at": run_at,
            "priority": priority,
            "attempts": attempts,
            "max_attempts": max_attempts,
        },
    ).all()
    return _to_jobs(connection, schema, rows)


def force_unlock_workers(connection: Connection, schema: str, worker_ids: list[str]) -> None:
    """Unlock every job and queue locked by one of ``worker_ids``."""
    connection.execute(_statement(_FORCE_UNLOCK_WORKERS, schema), {"worker_ids": worker_ids})


def cleanup(
    connection: Connection, schema: str, tasks: frozenset[str], keep: list[str]
) -> dict[str, int]:
    """Run the named cleanup tasks in :data:`CLEANUP_TASKS` order; return rows deleted by each."""
    counts = {}
    for name in CLEANUP_TASKS:
        if name in tasks:
            params = {"keep": keep} if name == "GC_TASK_IDENTIFIERS" else {}
            result = connection.execute(_statement(_CLEANUP[name], schema), params)
            counts[name] = result.rowcount
    return counts
