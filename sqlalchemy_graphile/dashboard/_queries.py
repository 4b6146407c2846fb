"""The dashboard's reads and the rows they return.

The statements are the query catalog's dashboard section
(:class:`~sqlalchemy_graphile._catalog._dashboard.DashboardStatements`): they read the
schema's tables directly, so they work on a schema that Node, the Rust port or this package
installed. Changes go through the schema's own admin functions instead (see ``_actions``).
A job is read with the catalog's job columns and built by its one row mapping, as a
:class:`JobDetail`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from .._catalog import catalog_for
from .._catalog._columns import QUEUE_NAME, TASK_IDENTIFIER, job_from_row
from .._catalog._dashboard import PageOrder
from .._catalog._job_filters import JobFilterShape
from ..job import Job
from ._filters import Cursor, JobFilter, case_matters, like_pattern, search_id

#: How many of the newest jobs a search looks at before it reads the whole table.
SEARCH_WINDOW = 20_000


# --- rows ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobRow:
    """One job in a list: its columns, with payload and last error cut to
    :data:`~sqlalchemy_graphile._catalog._dashboard.PREVIEW_LENGTH` characters."""

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
class JobDetail(Job):
    """Every column of one job (:attr:`payload` parses the whole payload), its state, its
    queue's lock and the database's time it was read at."""

    state: str
    queue_locked_at: datetime | None
    queue_locked_by: str | None
    db_now: datetime


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
    return job_from_row(
        row,
        row[TASK_IDENTIFIER],
        row[QUEUE_NAME],
        job_type=JobDetail,
        state=row.state,
        queue_locked_at=row.queue_locked_at,
        queue_locked_by=row.queue_locked_by,
        db_now=row.db_now,
    )


def _filter_shape(job_filter: JobFilter) -> JobFilterShape:
    term = job_filter.search
    return JobFilterShape(
        job_filter.state,
        task=job_filter.task is not None,
        queue=job_filter.queue is not None,
        search=None if term is None else "ilike" if case_matters(term) else "like",
    )


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
    """The dashboard's reads on one schema (validated once, here: raises
    :class:`~sqlalchemy_graphile.errors.InvalidIdentifierError` for an unsafe name). Each
    method runs on the connection it is given, inside the transaction open there."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self._statements = catalog_for(schema).dashboard

    async def limit_statement_time(self, connection: AsyncConnection, milliseconds: int) -> None:
        """Cancel any statement of this transaction that runs longer than ``milliseconds``."""
        await connection.execute(
            self._statements.limit_statement_time.clause, {"timeout": str(milliseconds)}
        )

    async def db_now(self, connection: AsyncConnection) -> datetime:
        """The database's ``now()``: the time the job states are judged by."""
        value: datetime = (await connection.execute(self._statements.db_now.clause)).scalar_one()
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
        shape = _filter_shape(job_filter)
        params = _filter_params(job_filter)
        if cursor is not None:
            params["after_id"] = cursor.id
            if run_order:
                params["after_priority"] = cursor.priority
                params["after_run_at"] = cursor.run_at
        params["limit"] = limit + 1
        if run_order:
            return await self._page(connection, shape, "run", cursor, params, limit)
        if job_filter.search is None:
            return await self._page(connection, shape, "newest", cursor, params, limit)
        params["window"] = SEARCH_WINDOW
        page = await self._page(connection, shape, "newest_in_window", cursor, params, limit)
        if page.next_cursor is not None:
            return page  # a full page among the newest jobs: no older job can come first
        del params["window"]
        return await self._page(connection, shape, "newest_searched", cursor, params, limit)

    async def _page(
        self,
        connection: AsyncConnection,
        shape: JobFilterShape,
        order: PageOrder,
        cursor: Cursor | None,
        params: dict[str, Any],
        limit: int,
    ) -> JobPage:
        statement = self._statements.job_page(shape, order, after_cursor=cursor is not None)
        rows = (await connection.execute(statement.clause, params)).all()
        jobs = [_job_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return JobPage(jobs, jobs[-1].cursor(order == "run").encode() if more else None)

    async def count_matching(
        self, connection: AsyncConnection, job_filter: JobFilter
    ) -> tuple[int, int | None]:
        """How many jobs match ``job_filter``, and the highest id among them."""
        statement = self._statements.count_matching(_filter_shape(job_filter))
        row = (await connection.execute(statement.clause, _filter_params(job_filter))).one()
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
        statement = self._statements.matching_ids(_filter_shape(job_filter))
        params = {**_filter_params(job_filter), "after_id": after_id, "max_id": max_id}
        result = await connection.execute(statement.clause, {**params, "limit": limit})
        return [int(value) for value in result.scalars()]

    async def job(self, connection: AsyncConnection, job_id: int) -> JobDetail | None:
        """The job with this id, or ``None``."""
        statement = self._statements.job
        row = (await connection.execute(statement.clause, {"job_id": job_id})).one_or_none()
        return None if row is None else _job_detail(row)

    async def job_by_key(self, connection: AsyncConnection, key: str) -> JobDetail | None:
        """The job with this job key, or ``None``."""
        statement = self._statements.job_by_key
        row = (await connection.execute(statement.clause, {"key": key})).one_or_none()
        return None if row is None else _job_detail(row)

    async def overview(self, connection: AsyncConnection) -> Overview:
        """Counts by state in total, per task and per queue, in one statement."""
        rows = (await connection.execute(self._statements.overview.clause)).all()
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
        rows = (await connection.execute(self._statements.queues.clause, {"limit": limit})).all()
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
        rows = (await connection.execute(self._statements.known_crontabs.clause)).all()
        return [KnownCrontab(**row._asdict()) for row in rows]

    async def lock_holders(self, connection: AsyncConnection) -> list[LockHolder]:
        """Every worker id that holds a job or queue lock."""
        rows = (await connection.execute(self._statements.lock_holders.clause)).all()
        return [
            LockHolder(r.worker_id, int(r.jobs), int(r.queues), r.oldest_lock, r.db_now)
            for r in rows
        ]

    async def heartbeats(self, connection: AsyncConnection) -> list[Heartbeat] | None:
        """The rows of ``_private_workers``, or ``None`` when the table is not installed."""
        exists = await connection.execute(self._statements.heartbeats_installed.clause)
        if not exists.scalar_one():
            return None
        rows = (await connection.execute(self._statements.heartbeats.clause)).all()
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
        row = (await connection.execute(self._statements.job_counters.clause)).one()
        return JobCounters(row.db_now, row.inserted, row.deleted)

    async def names(self, connection: AsyncConnection, limit: int) -> Names:
        """Up to ``limit`` task identifiers and queue names, sorted."""
        rows = (await connection.execute(self._statements.names.clause, {"limit": limit})).all()
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
