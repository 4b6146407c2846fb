"""Statements that only read: what the testing helpers look at on a test's own connection
(they never disturb its transaction)."""

from __future__ import annotations

from functools import cached_property

from .._identifiers import SchemaName
from ._columns import JOB_COLUMNS, NAME_COLUMNS, NAME_JOINS
from ._statement import Statement


class ReadStatements:
    """Read-only statements for one schema."""

    def __init__(self, schema: SchemaName) -> None:
        self.schema = schema
        self._s = schema.quoted

    @cached_property
    def schema_installed(self) -> Statement:
        """Whether the schema holds the jobs table."""
        return Statement(
            f"select to_regclass('{self._s}._private_jobs') is not null",
        )

    def _jobs(self, where: str, types: dict[str, str]) -> Statement:
        return Statement(
            f"select {JOB_COLUMNS}, {NAME_COLUMNS} from {self._s}._private_jobs as jobs"
            + NAME_JOINS.format(s=self._s)
            + where
            + " order by jobs.id",
            types,
        )

    @cached_property
    def jobs(self) -> Statement:
        """Every job (:data:`JOB_COLUMNS`, then :data:`NAME_COLUMNS`), oldest first."""
        return self._jobs("", {})

    @cached_property
    def jobs_of_task(self) -> Statement:
        """The jobs of the task ``identifier``, as :attr:`jobs`."""
        return self._jobs(
            " where tasks.identifier = cast(:identifier as text)", {"identifier": "text"}
        )

    @cached_property
    def job_counts(self) -> Statement:
        """(task identifier, number of jobs) rows."""
        return Statement(
            f"select tasks.identifier, count(*) from {self._s}._private_jobs as jobs"
            f" join {self._s}._private_tasks as tasks on tasks.id = jobs.task_id"
            " group by tasks.identifier"
        )

    @cached_property
    def latest_run_at(self) -> Statement:
        """The latest ``run_at`` of any job, or the transaction's ``now()`` if that is
        later: the time at which every job is due (``run_jobs(run_scheduled=True)``)."""
        return Statement(
            f"select greatest(now(), max(jobs.run_at)) from {self._s}._private_jobs as jobs"
        )
