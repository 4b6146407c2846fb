"""Every statement the dashboard reads with, and the rows they return.

The statements read the schema's tables directly (``_private_jobs`` and its name tables, the
known crontabs, and ``_private_workers`` where the crash-recovery objects are installed), so
they work on a schema that Node, the Rust port or this package installed. Changes go through
the schema's own admin functions instead (see ``_actions``).

Statement text is built from the constants below and the validated, quoted schema name;
every value is a bound parameter with an explicit type. The job states follow the Rust
port's definitions and use the generated ``is_available`` column, so that lists of ready and
scheduled jobs are read in index order.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, Row, Text, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import TextClause

from .._identifiers import quote_identifier
from ._filters import Cursor, JobFilter, case_matters, like_pattern, search_id

#: How many characters of a payload and of a last error a list row carries.
PREVIEW_LENGTH = 300

# The state of each row, and the filter of each state.
_STATE = """
  case when jobs.locked_at is not null then 'locked'
       when jobs.attempts >= jobs.max_attempts then 'failed'
       when jobs.run_at <= now() then 'ready'
       else 'scheduled' end
"""
_STATE_FILTERS: Mapping[str, str | None] = {
    "all": None,
    "ready": "jobs.is_available and jobs.run_at <= now()",
    "scheduled": "jobs.is_available and jobs.run_at > now()",
    "locked": "jobs.locked_at is not null",
    "failed": "jobs.locked_at is null and jobs.attempts >= jobs.max_attempts",
}
_TASK_FILTER = """
  jobs.task_id = (select tasks.id from {s}._private_tasks as tasks
                   where tasks.identifier = cast(:task as text))
"""
_QUEUE_FILTER = """
  jobs.job_queue_id = (select queues.id from {s}._private_job_queues as queues
                        where queues.queue_name = cast(:queue as text))
"""
# {op} is LIKE or ILIKE (a choice made from the search term's shape, never its text). Task
# and queue names are matched in their small tables once, not joined in for every job.
_SEARCH_FILTER = """
  (jobs.id = cast(:search_id as bigint)
   or jobs.task_id = any(array(
        select search_tasks.id from {s}._private_tasks as search_tasks
         where search_tasks.identifier {op} cast(:pattern as text) escape '\\'))
   or jobs.job_queue_id = any(array(
        select search_queues.id from {s}._private_job_queues as search_queues
         where search_queues.queue_name {op} cast(:pattern as text) escape '\\'))
   or jobs.key {op} cast(:pattern as text) escape '\\'
   or jobs.locked_by {op} cast(:pattern as text) escape '\\'
   or jobs.last_error {op} cast(:pattern as text) escape '\\'
   or cast(jobs.payload as text) {op} cast(:pattern as text) escape '\\')
"""
_JOBS_FROM = """
from {s}._private_jobs as jobs
left join {s}._private_tasks as tasks on tasks.id = jobs.task_id
left join {s}._private_job_queues as queues on queues.id = jobs.job_queue_id
"""
_LIST_COLUMNS = (
    """
select jobs.id, tasks.identifier as task_identifier, queues.queue_name, jobs.priority,
       jobs.run_at, jobs.attempts, jobs.max_attempts,
       left(jobs.last_error, {preview}) as last_error, jobs.key, jobs.locked_at,
       jobs.locked_by, jobs.created_at, jobs.updated_at,
       left(cast(jobs.payload as text), {preview}) as payload_preview,
       cast(jobs.flags as text) as flags_json, now() as db_now, """.replace(
        "{preview}", str(PREVIEW_LENGTH)
    )
    + _STATE
    + " as state"
)
_AFTER_NEWEST = "jobs.id < cast(:after_id as bigint)"
#: How many of the newest jobs a search looks at before it reads the whole table.
SEARCH_WINDOW = 20_000
# The next SEARCH_WINDOW jobs, newest first (after the cursor, if any), in place of the table.
_RECENT_JOBS_FROM = """
from (select recent.* from {s}._private_jobs as recent {after}
       order by recent.id desc limit cast(:window as integer)) as jobs
left join {s}._private_tasks as tasks on tasks.id = jobs.task_id
left join {s}._private_job_queues as queues on queues.id = jobs.job_queue_id
"""
_RECENT_AFTER = "where recent.id < cast(:after_id as bigint)"
_AFTER_RUN_ORDER = """
  (jobs.priority, jobs.run_at, jobs.id)
    > (cast(:after_priority as smallint), cast(:after_run_at as timestamptz),
       cast(:after_id as bigint))
"""
_ORDER_NEWEST = "order by jobs.id desc"
# The same order for a search: sorting by an expression makes PostgreSQL read the table in
# one (parallel) pass and keep the newest matches, instead of walking the primary key
# backwards until it has found a page; that walk is quick when matches are common, but
# several times slower than the pass when they are rare or absent (measured at 1 M jobs).
_ORDER_NEWEST_SEARCHED = "order by jobs.id + 0 desc"
_ORDER_RUN = "order by jobs.priority, jobs.run_at, jobs.id"

_JOB_DETAIL = (
    """
select jobs.id, tasks.identifier as task_identifier, queues.queue_name,
       cast(jobs.payload as text) as payload_json, jobs.priority, jobs.run_at, jobs.attempts,
       jobs.max_attempts, jobs.last_error, jobs.created_at, jobs.updated_at, jobs.key,
       jobs.locked_at, jobs.locked_by, jobs.revision, cast(jobs.flags as text) as flags_json,
       queues.locked_at as queue_locked_at, queues.locked_by as queue_locked_by,
       now() as db_now, """
    + _STATE
    + " as state"
    + _JOBS_FROM
)
_JOB_BY_ID = _JOB_DETAIL + "where jobs.id = cast(:job_id as bigint)"
_JOB_BY_KEY = _JOB_DETAIL + "where jobs.key = cast(:key as text)"

# One scan counts every state per task, per queue and in total (grouping sets).
_OVERVIEW = """
with counts as (
  select grouping(jobs.task_id) as task_grouped, grouping(jobs.job_queue_id) as queue_grouped,
         jobs.task_id, jobs.job_queue_id,
         count(*) filter (where jobs.is_available and jobs.run_at <= now()) as ready,
         count(*) filter (where jobs.is_available and jobs.run_at > now()) as scheduled,
         count(*) filter (where jobs.locked_at is not null) as locked,
         count(*) filter (where jobs.locked_at is null and jobs.attempts >= jobs.max_attempts)
           as failed,
         min(jobs.run_at) filter (where jobs.is_available and jobs.run_at <= now())
           as oldest_ready_run_at
    from {s}._private_jobs as jobs
   group by grouping sets ((jobs.task_id), (jobs.job_queue_id), ())
)
select counts.task_grouped, counts.queue_grouped, tasks.identifier, queues.queue_name,
       counts.ready, counts.scheduled, counts.locked, counts.failed,
       counts.oldest_ready_run_at, now() as db_now
  from counts
  left join {s}._private_tasks as tasks
    on counts.task_grouped = 0 and tasks.id = counts.task_id
  left join {s}._private_job_queues as queues
    on counts.queue_grouped = 0 and queues.id = counts.job_queue_id
"""

_QUEUES = """
select queues.queue_name, queues.locked_at, queues.locked_by,
       coalesce(counts.ready, 0) as ready, coalesce(counts.scheduled, 0) as scheduled,
       coalesce(counts.locked, 0) as locked, coalesce(counts.failed, 0) as failed,
       count(*) over () as total_queues, now() as db_now
  from {s}._private_job_queues as queues
  left join (
    select jobs.job_queue_id,
           count(*) filter (where jobs.is_available and jobs.run_at <= now()) as ready,
           count(*) filter (where jobs.is_available and jobs.run_at > now()) as scheduled,
           count(*) filter (where jobs.locked_at is not null) as locked,
           count(*) filter (where jobs.locked_at is null and jobs.attempts >= jobs.max_attempts)
             as failed
      from {s}._private_jobs as jobs
     where jobs.job_queue_id is not null
     group by jobs.job_queue_id
  ) as counts on counts.job_queue_id = queues.id
 order by queues.locked_at is null, queues.queue_name
 limit cast(:limit as integer)
"""

_KNOWN_CRONTABS = """
select crontabs.identifier, crontabs.known_since, crontabs.last_execution, now() as db_now
  from {s}._private_known_crontabs as crontabs
 order by crontabs.identifier
"""

# Whoever holds a lock on a job or a queue: the lock protocol's view of the workers.
_LOCK_HOLDERS = """
select holders.worker_id, sum(holders.jobs) as jobs, sum(holders.queues) as queues,
       min(holders.oldest_lock) as oldest_lock, now() as db_now
  from (
    select jobs.locked_by as worker_id, count(*) as jobs, 0 as queues,
           min(jobs.locked_at) as oldest_lock
      from {s}._private_jobs as jobs
     where jobs.locked_by is not null
     group by jobs.locked_by
    union all
    select queues.locked_by, 0, count(*), min(queues.locked_at)
      from {s}._private_job_queues as queues
     where queues.locked_by is not null
     group by queues.locked_by
  ) as holders
 group by holders.worker_id
 order by holders.worker_id
"""

# The crash-recovery heartbeat table (the Rust port's migration 20 objects); it may be absent.
_RELATION_EXISTS = "select to_regclass(cast(:relation as text)) is not null"
_HEARTBEATS = """
select workers.id, workers.last_heartbeat_at, workers.started_at,
       cast(workers.metadata as text) as metadata_json, now() as db_now
  from {s}._private_workers as workers
 order by workers.id
"""

# Cumulative row counters of the jobs table: a deleted row is a completed job (or one a
# person completed or cleaned up), an inserted row an added job.
_JOB_COUNTERS = """
select now() as db_now,
       pg_stat_get_tuples_inserted(tables.oid) as inserted,
       pg_stat_get_tuples_deleted(tables.oid) as deleted
  from (select to_regclass(cast(:relation as text)) as oid) as tables
"""

_NAMES = """
(select 'task' as kind, tasks.identifier as name
   from {s}._private_tasks as tasks order by tasks.identifier limit cast(:limit as integer))
union all
(select 'queue', queues.queue_name
   from {s}._private_job_queues as queues order by queues.queue_name
  limit cast(:limit as integer))
"""

_DB_NOW = "select now()"
_STATEMENT_TIMEOUT = "select set_config('statement_timeout', cast(:timeout as text), true)"

_TZ = DateTime(timezone=True)
_TYPES: Mapping[str, Any] = {
    "task": Text(),
    "queue": Text(),
    "pattern": Text(),
    "search_id": BigInteger(),
    "after_id": BigInteger(),
    "after_priority": Integer(),
    "after_run_at": _TZ,
    "limit": Integer(),
    "max_id": BigInteger(),
    "job_id": BigInteger(),
    "key": Text(),
    "relation": Text(),
    "timeout": Text(),
    "window": Integer(),
}
_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


@functools.lru_cache(maxsize=512)
def _statement(template: str, schema: str) -> TextClause:
    statement = text(template.replace("{s}", quote_identifier(schema)))
    names = dict.fromkeys(_PARAMETER.findall(template))
    return statement.bindparams(*(bindparam(name, type_=_TYPES[name]) for name in names))


# --- rows ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobRow:
    """One job in a list: its columns, with payload and last error cut to
    :data:`PREVIEW_LENGTH` characters."""

    id: int
    task_identifier: str | None
    queue_name: str | None
    state: str
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    last_error: str | None
    key: str | None
    locked_at: datetime | None
    locked_by: str | None
    created_at: datetime
    updated_at: datetime
    payload_preview: str
    flags: dict[str, Any] | None
    db_now: datetime

    def cursor(self, run_order: bool) -> Cursor:
        """The cursor of the page that starts after this row."""
        if run_order:
            return Cursor(self.id, self.priority, self.run_at)
        return Cursor(self.id)


@dataclass(frozen=True, slots=True)
class JobPage:
    """A page of the jobs list, and the cursor of the next one (``None`` on the last)."""

    jobs: list[JobRow]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class JobDetail:
    """Every column of one job, with its whole payload and its queue's lock."""

    id: int
    task_identifier: str | None
    queue_name: str | None
    state: str
    payload_json: str
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    key: str | None
    locked_at: datetime | None
    locked_by: str | None
    revision: int
    flags: dict[str, Any] | None
    queue_locked_at: datetime | None
    queue_locked_by: str | None
    db_now: datetime

    @property
    def payload(self) -> Any:
        """The payload, parsed."""
        return json.loads(self.payload_json)


@dataclass(frozen=True, slots=True)
class StateCounts:
    """How many jobs of a task, of a queue or in total are in each state."""

    name: str | None
    ready: int
    scheduled: int
    locked: int
    failed: int
    oldest_ready_run_at: datetime | None

    @property
    def total(self) -> int:
        """All the jobs counted."""
        return self.ready + self.scheduled + self.locked + self.failed


@dataclass(frozen=True, slots=True)
class Overview:
    """The counts by state, in total, per task and per queue (``name`` ``None``: jobs in no
    named queue), read in one statement at ``db_now``."""

    total: StateCounts
    by_task: list[StateCounts]
    by_queue: list[StateCounts]
    db_now: datetime


@dataclass(frozen=True, slots=True)
class QueueRow:
    """A named queue, its lock, and how many of its jobs are in each state."""

    queue_name: str
    locked_at: datetime | None
    locked_by: str | None
    ready: int
    scheduled: int
    locked: int
    failed: int
    db_now: datetime


@dataclass(frozen=True, slots=True)
class QueuePage:
    """The first named queues (locked ones first) and how many there are in all."""

    queues: list[QueueRow]
    total: int


@dataclass(frozen=True, slots=True)
class KnownCrontab:
    """A cron item the database knows: when it was first seen and the last minute it was
    scheduled for."""

    identifier: str
    known_since: datetime
    last_execution: datetime | None
    db_now: datetime


@dataclass(frozen=True, slots=True)
class LockHolder:
    """A worker id (a pool id for Node) holding locks, and its oldest lock."""

    worker_id: str
    jobs: int
    queues: int
    oldest_lock: datetime | None
    db_now: datetime


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A row of the crash-recovery table ``_private_workers``."""

    worker_id: str
    last_heartbeat_at: datetime
    started_at: datetime
    metadata: Any
    db_now: datetime


@dataclass(frozen=True, slots=True)
class JobCounters:
    """The jobs table's cumulative insert and delete counters at ``db_now`` (``None`` when
    the statistics are not available)."""

    db_now: datetime
    inserted: int | None
    deleted: int | None


@dataclass(frozen=True, slots=True)
class Names:
    """Known task identifiers and queue names, for the filter suggestions."""

    tasks: list[str]
    queues: list[str]


def _flags(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(json.loads(text))


def _job_row(row: Row[Any]) -> JobRow:
    values = row._asdict()
    values["flags"] = _flags(values.pop("flags_json"))
    return JobRow(**values)


def _job_detail(row: Row[Any]) -> JobDetail:
    values = row._asdict()
    values["flags"] = _flags(values.pop("flags_json"))
    return JobDetail(**values)


# --- the queries ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _filtered(
    state: str, task: bool, queue: bool, search: str | None, extra: tuple[str, ...]
) -> str:
    """The ``where`` clause of a job filter's shape: which filters are present, whether the
    search is case-insensitive (``search`` is ``LIKE`` or ``ILIKE``), plus ``extra``
    conditions."""
    conditions = [c for c in (_STATE_FILTERS[state],) if c is not None]
    if task:
        conditions.append(_TASK_FILTER)
    if queue:
        conditions.append(_QUEUE_FILTER)
    if search is not None:
        conditions.append(_SEARCH_FILTER.replace("{op}", search))
    conditions.extend(extra)
    return ("where " + "\n  and ".join(conditions)) if conditions else ""


def _filter_shape(job_filter: JobFilter) -> tuple[str, bool, bool, str | None]:
    term = job_filter.search
    operator = None if term is None else "ilike" if case_matters(term) else "like"
    return (job_filter.state, job_filter.task is not None, job_filter.queue is not None, operator)


def _filter_params(job_filter: JobFilter) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if job_filter.task is not None:
        params["task"] = job_filter.task
    if job_filter.queue is not None:
        params["queue"] = job_filter.queue
    if job_filter.search is not None:
        params["pattern"] = like_pattern(job_filter.search)
        params["search_id"] = search_id(job_filter.search)
    return params


class DashboardQueries:
    """The dashboard's reads on one schema (validated and quoted once, here). Each method
    runs on the connection it is given, inside the transaction open there."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        quoted = quote_identifier(schema)
        self._jobs_relation = f"{quoted}._private_jobs"
        self._workers_relation = f"{quoted}._private_workers"

    def _sql(self, template: str) -> TextClause:
        return _statement(template, self.schema)

    async def limit_statement_time(self, connection: AsyncConnection, milliseconds: int) -> None:
        """Cancel any statement of this transaction that runs longer than ``milliseconds``."""
        await connection.execute(self._sql(_STATEMENT_TIMEOUT), {"timeout": str(milliseconds)})

    async def db_now(self, connection: AsyncConnection) -> datetime:
        """The database's ``now()``: the time the job states are judged by."""
        value: datetime = (await connection.execute(text(_DB_NOW))).scalar_one()
        return value

    async def jobs(
        self, connection: AsyncConnection, job_filter: JobFilter, cursor: Cursor | None, limit: int
    ) -> JobPage:
        """One page of jobs matching ``job_filter``, after ``cursor``: ready and scheduled
        jobs in run order, others newest first.

        A newest-first search first looks among the next :data:`SEARCH_WINDOW` jobs only: a
        common term fills the page there at once. Otherwise it reads the whole table.
        """
        run_order = job_filter.run_order
        params = _filter_params(job_filter)
        extra: tuple[str, ...] = ()
        if cursor is not None:
            extra = (_AFTER_RUN_ORDER if run_order else _AFTER_NEWEST,)
            params["after_id"] = cursor.id
            if run_order:
                params["after_priority"] = cursor.priority
                params["after_run_at"] = cursor.run_at
        params["limit"] = limit + 1
        where = _filtered(*_filter_shape(job_filter), extra)
        if run_order:
            return await self._page(connection, _JOBS_FROM, where, _ORDER_RUN, params, limit)
        if job_filter.search is None:
            return await self._page(connection, _JOBS_FROM, where, _ORDER_NEWEST, params, limit)
        window = _RECENT_JOBS_FROM.replace("{after}", "" if cursor is None else _RECENT_AFTER)
        params["window"] = SEARCH_WINDOW
        page = await self._page(connection, window, where, _ORDER_NEWEST, params, limit)
        if page.next_cursor is not None:
            return page  # a full page among the newest jobs: no older job can come first
        return await self._page(
            connection, _JOBS_FROM, where, _ORDER_NEWEST_SEARCHED, params, limit
        )

    async def _page(
        self,
        connection: AsyncConnection,
        source: str,
        where: str,
        order: str,
        params: dict[str, Any],
        limit: int,
    ) -> JobPage:
        template = f"{_LIST_COLUMNS}{source}{where}\n{order}\nlimit cast(:limit as integer)"
        rows = (await connection.execute(self._sql(template), params)).all()
        jobs = [_job_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return JobPage(jobs, jobs[-1].cursor(order == _ORDER_RUN).encode() if more else None)

    async def count_matching(
        self, connection: AsyncConnection, job_filter: JobFilter
    ) -> tuple[int, int | None]:
        """How many jobs match ``job_filter``, and the highest id among them."""
        where = _filtered(*_filter_shape(job_filter), ())
        template = f"select count(*), max(jobs.id){_JOBS_FROM}{where}"
        row = (await connection.execute(self._sql(template), _filter_params(job_filter))).one()
        return int(row[0]), row[1]

    async def matching_ids(
        self,
        connection: AsyncConnection,
        job_filter: JobFilter,
        *,
        after_id: int,
        max_id: int,
        limit: int,
    ) -> list[int]:
        """The ids of jobs matching ``job_filter`` in ``after_id < id <= max_id``, lowest
        first, at most ``limit`` of them."""
        extra = ("jobs.id > cast(:after_id as bigint)", "jobs.id <= cast(:max_id as bigint)")
        where = _filtered(*_filter_shape(job_filter), extra)
        template = (
            f"select jobs.id{_JOBS_FROM}{where}\norder by jobs.id\nlimit cast(:limit as integer)"
        )
        params = {**_filter_params(job_filter), "after_id": after_id, "max_id": max_id}
        result = await connection.execute(self._sql(template), {**params, "limit": limit})
        return [int(value) for value in result.scalars()]

    async def job(self, connection: AsyncConnection, job_id: int) -> JobDetail | None:
        """The job with this id, or ``None``."""
        row = (await connection.execute(self._sql(_JOB_BY_ID), {"job_id": job_id})).one_or_none()
        return None if row is None else _job_detail(row)

    async def job_by_key(self, connection: AsyncConnection, key: str) -> JobDetail | None:
        """The job with this job key, or ``None``."""
        row = (await connection.execute(self._sql(_JOB_BY_KEY), {"key": key})).one_or_none()
        return None if row is None else _job_detail(row)

    async def overview(self, connection: AsyncConnection) -> Overview:
        """Counts by state in total, per task and per queue, in one statement."""
        rows = (await connection.execute(self._sql(_OVERVIEW))).all()
        total: StateCounts | None = None
        by_task: list[StateCounts] = []
        by_queue: list[StateCounts] = []
        db_now: datetime | None = None
        for row in rows:
            db_now = row.db_now
            if row.task_grouped and row.queue_grouped:
                total = _counts(row, None)
            elif row.queue_grouped:
                by_task.append(_counts(row, row.identifier))
            else:
                by_queue.append(_counts(row, row.queue_name))
        if db_now is None:
            db_now = await self.db_now(connection)
        by_task.sort(key=lambda c: (-c.total, c.name or ""))
        by_queue.sort(key=lambda c: (c.name is None, -c.total, c.name or ""))
        return Overview(total or StateCounts(None, 0, 0, 0, 0, None), by_task, by_queue, db_now)

    async def queues(self, connection: AsyncConnection, limit: int) -> QueuePage:
        """The first ``limit`` named queues, locked ones first, with their job counts."""
        rows = (await connection.execute(self._sql(_QUEUES), {"limit": limit})).all()
        total = int(rows[0].total_queues) if rows else 0
        queues = [
            QueueRow(
                r.queue_name,
                r.locked_at,
                r.locked_by,
                r.ready,
                r.scheduled,
                r.locked,
                r.failed,
                r.db_now,
            )
            for r in rows
        ]
        return QueuePage(queues, total)

    async def known_crontabs(self, connection: AsyncConnection) -> list[KnownCrontab]:
        """Every cron item identifier the database knows."""
        rows = (await connection.execute(self._sql(_KNOWN_CRONTABS))).all()
        return [KnownCrontab(**row._asdict()) for row in rows]

    async def lock_holders(self, connection: AsyncConnection) -> list[LockHolder]:
        """Every worker id that holds a job or queue lock."""
        rows = (await connection.execute(self._sql(_LOCK_HOLDERS))).all()
        return [
            LockHolder(r.worker_id, int(r.jobs), int(r.queues), r.oldest_lock, r.db_now)
            for r in rows
        ]

    async def heartbeats(self, connection: AsyncConnection) -> list[Heartbeat] | None:
        """The rows of ``_private_workers``, or ``None`` when the table is not installed."""
        exists = await connection.execute(
            self._sql(_RELATION_EXISTS), {"relation": self._workers_relation}
        )
        if not exists.scalar_one():
            return None
        rows = (await connection.execute(self._sql(_HEARTBEATS))).all()
        return [
            Heartbeat(
                r.id,
                r.last_heartbeat_at,
                r.started_at,
                None if r.metadata_json is None else json.loads(r.metadata_json),
                r.db_now,
            )
            for r in rows
        ]

    async def job_counters(self, connection: AsyncConnection) -> JobCounters:
        """The jobs table's cumulative insert and delete counters, now."""
        row = (
            await connection.execute(self._sql(_JOB_COUNTERS), {"relation": self._jobs_relation})
        ).one()
        return JobCounters(row.db_now, row.inserted, row.deleted)

    async def names(self, connection: AsyncConnection, limit: int) -> Names:
        """Up to ``limit`` task identifiers and queue names, sorted."""
        rows = (await connection.execute(self._sql(_NAMES), {"limit": limit})).all()
        return Names(
            [r.name for r in rows if r.kind == "task"],
            [r.name for r in rows if r.kind == "queue"],
        )


def _counts(row: Row[Any], name: str | None) -> StateCounts:
    return StateCounts(
        name,
        int(row.ready),
        int(row.scheduled),
        int(row.locked),
        int(row.failed),
        row.oldest_ready_run_at,
    )
