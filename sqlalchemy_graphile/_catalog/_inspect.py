"""The statements of the command line's read-only commands (``list``, ``queues``,
``workers``); ``show`` and ``stats`` read what the dashboard reads (:attr:`Catalog.dashboard`'s
``job`` and ``overview``)."""

from __future__ import annotations

from functools import cached_property, lru_cache

from .._identifiers import SchemaName
from ._columns import JOB_COLUMNS, NAME_COLUMNS, NAME_JOINS
from ._job_filters import JobFilterShape, filter_where
from ._job_states import JOB_STATE
from ._statement import Statement

#: Of the ready jobs, those of the tasks in ``unhandled`` (none when it is empty).
_UNHANDLED = "tasks.identifier = any(cast(:unhandled as text[]))"


class InspectStatements:
    """The command line's reads on one schema."""

    def __init__(self, schema: SchemaName) -> None:
        self.schema = schema
        self._s = schema.quoted

    def jobs(self, shape: JobFilterShape, *, unhandled_only: bool = False) -> Statement:
        """Jobs matching ``shape`` in run order (priority, run_at, id), ``limit`` of them
        after the first ``offset``: :data:`JOB_COLUMNS`, :data:`NAME_COLUMNS`, then
        ``state``. With ``unhandled_only``, only those of the tasks in ``unhandled``."""
        return _jobs(self.schema, shape, unhandled_only)

    @cached_property
    def queues(self) -> Statement:
        """Every named queue by name: ``queue_name``, ``locked_by``, ``locked_at`` and how
        many ``jobs`` it holds."""
        s = self._s
        return Statement(
            "select queues.queue_name, queues.locked_by, queues.locked_at,"
            " count(jobs.id) as jobs"
            f" from {s}._private_job_queues as queues"
            f" left join {s}._private_jobs as jobs on jobs.job_queue_id = queues.id"
            " group by queues.id order by queues.queue_name"
        )

    @cached_property
    def job_lock_owners(self) -> Statement:
        """Each owner of job locks: ``worker_id``, ``locked_jobs``, ``job_ids`` and
        ``oldest_lock``."""
        return Statement(
            "select jobs.locked_by as worker_id, count(*) as locked_jobs,"
            " array_agg(jobs.id) as job_ids, min(jobs.locked_at) as oldest_lock"
            f" from {self._s}._private_jobs as jobs where jobs.locked_by is not null"
            " group by jobs.locked_by"
        )

    @cached_property
    def queue_lock_owners(self) -> Statement:
        """Each owner of queue locks: ``worker_id`` and ``locked_queues``."""
        return Statement(
            "select queues.locked_by as worker_id, count(*) as locked_queues"
            f" from {self._s}._private_job_queues as queues where queues.locked_by is not null"
            " group by queues.locked_by"
        )


@lru_cache(maxsize=64)
def _jobs(schema: SchemaName, shape: JobFilterShape, unhandled_only: bool) -> Statement:
    s = schema.quoted
    types = {**shape.parameters(), "limit": "integer", "offset": "integer"}
    extra: tuple[str, ...] = ()
    if unhandled_only:
        extra = (_UNHANDLED,)
        types["unhandled"] = "text[]"
    return Statement(
        f"select {JOB_COLUMNS}, {NAME_COLUMNS}, {JOB_STATE} as state"
        f" from {s}._private_jobs as jobs{NAME_JOINS.format(s=s)}"
        f"{filter_where(s, shape, extra)}"
        " order by jobs.priority, jobs.run_at, jobs.id"
        " limit cast(:limit as integer) offset cast(:offset as integer)",
        types,
    )
