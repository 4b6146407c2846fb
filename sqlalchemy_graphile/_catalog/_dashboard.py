"""The statements the dashboard reads with.

They read the schema's tables directly (``_private_jobs`` and its name tables, the known
crontabs, and ``_private_workers`` where the crash-recovery objects are installed), so they
work on a schema that Node, the Rust port or this package installed. The dashboard changes
nothing with them: its actions go through the schema's own admin functions.

The jobs list depends on the request: which filters it has
(:class:`~._job_filters.JobFilterShape`), its order and whether it continues after a keyset
cursor. :meth:`DashboardStatements.job_page`,
:meth:`~DashboardStatements.count_matching` and :meth:`~DashboardStatements.matching_ids`
build the statement of each such shape once; the filter values themselves are always bound
parameters (:meth:`JobFilterShape.parameters` lists them).
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from typing import Literal

from .._identifiers import SchemaName
from ._columns import JOB_COLUMNS, NAME_COLUMNS, NAME_JOINS
from ._job_filters import JobFilterShape, filter_where
from ._job_states import JOB_STATE, STATE_CONDITIONS, STATE_COUNTS
from ._statement import Statement

#: How many characters of a payload and of a last error a list row carries.
PREVIEW_LENGTH = 300

#: The order of a page of jobs: ``run`` is (priority, run_at, id); ``newest`` is by id,
#: newest first; ``newest_in_window`` the same among the ``window`` newest jobs (after the
#: cursor) only; ``newest_searched`` the same order, sorted by an expression so that
#: PostgreSQL reads the table in one (parallel) pass and keeps the newest matches instead of
#: walking the primary key backwards until it has found a page (that walk is quick when
#: matches are common, but several times slower than the pass when they are rare or absent,
#: measured at 1 M jobs).
PageOrder = Literal["run", "newest", "newest_in_window", "newest_searched"]


class DashboardStatements:
    """The dashboard's reads on one schema (see the module docstring)."""

    def __init__(self, schema: SchemaName) -> None:
        self.schema = schema
        self._s = schema.quoted

    @cached_property
    def limit_statement_time(self) -> Statement:
        """Cancel any later statement of the transaction that runs longer than ``timeout``
        (text: milliseconds)."""
        return Statement(
            "select set_config('statement_timeout', cast(:timeout as text), true)",
            {"timeout": "text"},
        )

    @cached_property
    def db_now(self) -> Statement:
        """The database's ``now()``: the time the job states are judged by."""
        return Statement("select now()")

    # -- the jobs list ------------------------------------------------------------------

    def job_page(self, shape: JobFilterShape, order: PageOrder, *, after_cursor: bool) -> Statement:
        """Up to ``limit`` jobs matching ``shape`` in ``order`` (``newest_in_window`` also
        takes ``window``), after the cursor when ``after_cursor``: ``after_id``, and in run
        order also ``after_priority`` and ``after_run_at``. The columns of a list row: the
        job's, with payload (``payload_preview``) and last error cut to
        :data:`PREVIEW_LENGTH` characters, ``flags_json``, ``db_now`` and ``state``."""
        return _job_page(self.schema, shape, order, after_cursor)

    def count_matching(self, shape: JobFilterShape) -> Statement:
        """One row: how many jobs match ``shape``, and the highest id among them."""
        return _count_matching(self.schema, shape)

    def matching_ids(self, shape: JobFilterShape) -> Statement:
        """The ids of jobs matching ``shape`` in ``after_id < id <= max_id``, lowest first,
        at most ``limit`` of them."""
        return _matching_ids(self.schema, shape)

    # -- one job ------------------------------------------------------------------------

    def _job(self, where: str, types: dict[str, str]) -> Statement:
        return Statement(
            f"select {JOB_COLUMNS}, {NAME_COLUMNS},"
            " job_queues.locked_at as queue_locked_at, job_queues.locked_by as queue_locked_by,"
            f" now() as db_now, {JOB_STATE} as state"
            f" from {self._s}._private_jobs as jobs{NAME_JOINS.format(s=self._s)} {where}",
            types,
        )

    @cached_property
    def job(self) -> Statement:
        """The job ``job_id``: :data:`JOB_COLUMNS`, :data:`NAME_COLUMNS`, then its queue's
        lock (``queue_locked_at``, ``queue_locked_by``), ``db_now`` and ``state``."""
        return self._job("where jobs.id = cast(:job_id as bigint)", {"job_id": "bigint"})

    @cached_property
    def job_by_key(self) -> Statement:
        """The job with job key ``key``, as :attr:`job`."""
        return self._job("where jobs.key = cast(:key as text)", {"key": "text"})

    # -- counts, queues, cron, workers --------------------------------------------------

    @cached_property
    def overview(self) -> Statement:
        """The counts by state (and the oldest ready job's ``run_at``) per task, per queue
        and in total, in one scan (grouping sets): ``task_grouped`` and ``queue_grouped``
        say which group a row counts, ``identifier`` and ``queue_name`` name it; every row
        has ``db_now``."""
        s = self._s
        return Statement(
            "with counts as ("
            " select grouping(jobs.task_id) as task_grouped,"
            " grouping(jobs.job_queue_id) as queue_grouped, jobs.task_id, jobs.job_queue_id,"
            f" {STATE_COUNTS},"
            f" min(jobs.run_at) filter (where {STATE_CONDITIONS['ready']})"
            " as oldest_ready_run_at"
            f" from {s}._private_jobs as jobs"
            " group by grouping sets ((jobs.task_id), (jobs.job_queue_id), ()))"
            " select counts.task_grouped, counts.queue_grouped, tasks.identifier,"
            " queues.queue_name, counts.ready, counts.scheduled, counts.locked, counts.failed,"
            " counts.oldest_ready_run_at, now() as db_now"
            " from counts"
            f" left join {s}._private_tasks as tasks"
            " on counts.task_grouped = 0 and tasks.id = counts.task_id"
            f" left join {s}._private_job_queues as queues"
            " on counts.queue_grouped = 0 and queues.id = counts.job_queue_id"
        )

    @cached_property
    def queues(self) -> Statement:
        """The first ``limit`` named queues, locked ones first, with their locks, their job
        counts by state, ``total_queues`` (how many there are in all) and ``db_now``."""
        s = self._s
        return Statement(
            "select queues.queue_name, queues.locked_at, queues.locked_by,"
            " coalesce(counts.ready, 0) as ready, coalesce(counts.scheduled, 0) as scheduled,"
            " coalesce(counts.locked, 0) as locked, coalesce(counts.failed, 0) as failed,"
            " count(*) over () as total_queues, now() as db_now"
            f" from {s}._private_job_queues as queues"
            f" left join (select jobs.job_queue_id, {STATE_COUNTS}"
            f" from {s}._private_jobs as jobs where jobs.job_queue_id is not null"
            " group by jobs.job_queue_id) as counts on counts.job_queue_id = queues.id"
            " order by queues.locked_at is null, queues.queue_name"
            " limit cast(:limit as integer)",
            {"limit": "integer"},
        )

    @cached_property
    def known_crontabs(self) -> Statement:
        """Every known cron item: ``identifier``, ``known_since``, ``last_execution`` and
        ``db_now``, by identifier."""
        return Statement(
            "select crontabs.identifier, crontabs.known_since, crontabs.last_execution,"
            " now() as db_now"
            f" from {self._s}._private_known_crontabs as crontabs order by crontabs.identifier"
        )

    @cached_property
    def lock_holders(self) -> Statement:
        """Whoever holds a lock on a job or a queue (the lock protocol's view of the
        workers): ``worker_id``, ``jobs``, ``queues``, ``oldest_lock`` and ``db_now``."""
        s = self._s
        return Statement(
            "select holders.worker_id, sum(holders.jobs) as jobs, sum(holders.queues) as queues,"
            " min(holders.oldest_lock) as oldest_lock, now() as db_now"
            " from (select jobs.locked_by as worker_id, count(*) as jobs, 0 as queues,"
            " min(jobs.locked_at) as oldest_lock"
            f" from {s}._private_jobs as jobs where jobs.locked_by is not null"
            " group by jobs.locked_by"
            " union all"
            " select queues.locked_by, 0, count(*), min(queues.locked_at)"
            f" from {s}._private_job_queues as queues where queues.locked_by is not null"
            " group by queues.locked_by) as holders"
            " group by holders.worker_id order by holders.worker_id"
        )

    @cached_property
    def heartbeats_installed(self) -> Statement:
        """Whether the crash-recovery table ``_private_workers`` (the Rust port's migration
        20 objects) exists."""
        return Statement(f"select to_regclass('{self._s}._private_workers') is not null")

    @cached_property
    def heartbeats(self) -> Statement:
        """The rows of ``_private_workers``: ``id``, ``last_heartbeat_at``, ``started_at``,
        ``metadata_json`` and ``db_now``, by id."""
        return Statement(
            "select workers.id, workers.last_heartbeat_at, workers.started_at,"
            " cast(workers.metadata as text) as metadata_json, now() as db_now"
            f" from {self._s}._private_workers as workers order by workers.id"
        )

    @cached_property
    def job_counters(self) -> Statement:
        """The jobs table's cumulative row counters: ``inserted`` (added jobs) and
        ``deleted`` (completed jobs, or ones a person completed or cleaned up), null when
        the statistics are not available, and ``db_now``."""
        return Statement(
            "select now() as db_now,"
            " pg_stat_get_tuples_inserted(tables.oid) as inserted,"
            " pg_stat_get_tuples_deleted(tables.oid) as deleted"
            f" from (select to_regclass('{self._s}._private_jobs') as oid) as tables"
        )

    @cached_property
    def names(self) -> Statement:
        """Up to ``limit`` task identifiers and up to ``limit`` queue names, sorted:
        (``kind``, ``name``) rows, ``kind`` being ``task`` or ``queue``."""
        s = self._s
        return Statement(
            "(select 'task' as kind, tasks.identifier as name"
            f" from {s}._private_tasks as tasks order by tasks.identifier"
            " limit cast(:limit as integer))"
            " union all"
            " (select 'queue', queues.queue_name"
            f" from {s}._private_job_queues as queues order by queues.queue_name"
            " limit cast(:limit as integer))",
            {"limit": "integer"},
        )


# -- the jobs list, by shape ------------------------------------------------------------

_LIST_COLUMNS = (
    f"select jobs.id, {NAME_COLUMNS}, jobs.priority, jobs.run_at, jobs.attempts,"
    f" jobs.max_attempts, left(jobs.last_error, {PREVIEW_LENGTH}) as last_error, jobs.key,"
    " jobs.locked_at, jobs.locked_by, jobs.created_at, jobs.updated_at,"
    f" left(cast(jobs.payload as text), {PREVIEW_LENGTH}) as payload_preview,"
    f" cast(jobs.flags as text) as flags_json, now() as db_now, {JOB_STATE} as state"
)
_AFTER_NEWEST = "jobs.id < cast(:after_id as bigint)"
_AFTER_RUN_ORDER = (
    "(jobs.priority, jobs.run_at, jobs.id) > (cast(:after_priority as smallint),"
    " cast(:after_run_at as timestamptz), cast(:after_id as bigint))"
)
_ORDERS: dict[str, str] = {
    "run": "order by jobs.priority, jobs.run_at, jobs.id",
    "newest": "order by jobs.id desc",
    "newest_in_window": "order by jobs.id desc",
    "newest_searched": "order by jobs.id + 0 desc",
}


def _jobs_from(s: str) -> str:
    return f" from {s}._private_jobs as jobs{NAME_JOINS.format(s=s)}"


def _window_from(s: str, after_cursor: bool) -> str:
    """The next ``window`` jobs, newest first (after the cursor, if any), as ``jobs``."""
    after = " where recent.id < cast(:after_id as bigint)" if after_cursor else ""
    return (
        f" from (select recent.* from {s}._private_jobs as recent{after}"
        " order by recent.id desc limit cast(:window as integer)) as jobs"
        f"{NAME_JOINS.format(s=s)}"
    )


@lru_cache(maxsize=256)
def _job_page(
    schema: SchemaName, shape: JobFilterShape, order: PageOrder, after_cursor: bool
) -> Statement:
    s = schema.quoted
    types = shape.parameters()
    extra: tuple[str, ...] = ()
    if after_cursor:
        types["after_id"] = "bigint"
        if order == "run":
            extra = (_AFTER_RUN_ORDER,)
            types.update(after_priority="integer", after_run_at="timestamptz")
        else:
            extra = (_AFTER_NEWEST,)
    if order == "newest_in_window":
        source = _window_from(s, after_cursor)
        types["window"] = "integer"
    else:
        source = _jobs_from(s)
    types["limit"] = "integer"
    return Statement(
        f"{_LIST_COLUMNS}{source}{filter_where(s, shape, extra)} {_ORDERS[order]}"
        " limit cast(:limit as integer)",
        types,
    )


@lru_cache(maxsize=64)
def _count_matching(schema: SchemaName, shape: JobFilterShape) -> Statement:
    s = schema.quoted
    return Statement(
        f"select count(*), max(jobs.id){_jobs_from(s)}{filter_where(s, shape, ())}",
        shape.parameters(),
    )


@lru_cache(maxsize=64)
def _matching_ids(schema: SchemaName, shape: JobFilterShape) -> Statement:
    s = schema.quoted
    extra = ("jobs.id > cast(:after_id as bigint)", "jobs.id <= cast(:max_id as bigint)")
    return Statement(
        f"select jobs.id{_jobs_from(s)}{filter_where(s, shape, extra)}"
        " order by jobs.id limit cast(:limit as integer)",
        {**shape.parameters(), "after_id": "bigint", "max_id": "bigint", "limit": "integer"},
    )
