"""The statements that add and administer jobs: the schema's ``add_job`` / ``add_jobs`` /
``remove_job`` / ``complete_jobs`` / ``permanently_fail_jobs`` / ``reschedule_jobs`` /
``force_unlock_workers`` functions, the cleanup tasks, and the lookups that name tasks and
queues created while a statement ran.

They are the ones Graphile Worker's utilities run, so jobs added or changed here are the
rows Node and Rust workers expect. Every statement that returns jobs selects
:data:`~._columns.JOB_COLUMNS` then :data:`~._columns.NAME_COLUMNS` from the function's rows
(aliased ``jobs``), named by :data:`~._columns.NAME_JOINS`.
"""

from __future__ import annotations

from functools import cached_property

from .._identifiers import SchemaName
from ._columns import JOB_COLUMNS, NAME_COLUMNS, NAME_JOINS
from ._statement import Statement

#: The cleanup tasks, in the order they always run.
CLEANUP_TASKS = ("DELETE_PERMAFAILED_JOBS", "GC_TASK_IDENTIFIERS", "GC_JOB_QUEUES")

#: The columns ``copy_jobs`` writes, in order; the others take their defaults.
COPY_COLUMNS = (
    "id",
    "job_queue_id",
    "task_id",
    "payload",
    "priority",
    "run_at",
    "max_attempts",
    "flags",
)

#: What a bulk add that returns ids selects instead of :data:`JOB_COLUMNS`: the columns
#: pairing reads, at their positions, and null for the others, which the server then
#: neither formats nor sends.
PAIRING_COLUMNS = (
    "jobs.id, jobs.job_queue_id, jobs.task_id, cast(jobs.payload as text) as payload,"
    " jobs.priority, jobs.run_at, null, jobs.max_attempts, null, null, null, jobs.key,"
    " null, null, null, cast(jobs.flags as text) as flags"
)


class JobStatements:
    """The add and admin statements of one schema (see the module docstring)."""

    def __init__(self, schema: SchemaName) -> None:
        self.schema = schema
        self._s = schema.quoted

    def _returning_jobs(
        self, source: str, *, by_id: bool = False, columns: str = JOB_COLUMNS
    ) -> str:
        """Select the job ``columns`` and names of the rows of ``source`` (a set-returning
        function call), ordered by id when ``by_id``."""
        order = " order by jobs.id" if by_id else ""
        return (
            f"select {columns}, {NAME_COLUMNS} from {source} as jobs"
            f"{NAME_JOINS.format(s=self._s)}{order}"
        )

    # -- adding -------------------------------------------------------------------------

    @cached_property
    def add_job(self) -> Statement:
        """Add one job with the ``add_job`` function (every key mode, ``unsafe_dedupe``
        included); one row, all null when the job's key was taken by a job locked in the
        middle of the call."""
        return Statement(
            self._returning_jobs(
                f"{self._s}.add_job("
                "identifier => cast(:identifier as text),"
                " payload => cast(:payload as json),"
                " queue_name => cast(:queue_name as text),"
                " run_at => cast(:run_at as timestamptz),"
                " max_attempts => cast(:max_attempts as integer),"
                " job_key => cast(:job_key as text),"
                " priority => cast(:priority as integer),"
                " flags => cast(:flags as text[]),"
                " job_key_mode => cast(:job_key_mode as text))"
            ),
            {
                "identifier": "text",
                "payload": "json",
                "queue_name": "text",
                "run_at": "timestamptz",
                "max_attempts": "integer",
                "job_key": "text",
                "priority": "integer",
                "flags": "text[]",
                "job_key_mode": "text",
            },
        )

    @cached_property
    def add_jobs(self) -> Statement:
        """Add ``specs`` (one JSON array of job specs, turned into ``job_spec`` values in
        input order) with the ``add_jobs`` function; ``preserve_run_at`` keeps the
        ``run_at`` of a job whose key is taken. The rows come back in an order only our
        own function body promises: pair them with the specs by content."""
        return self._add_jobs(JOB_COLUMNS)

    @cached_property
    def add_job_ids(self) -> Statement:
        """:attr:`add_jobs`, selecting :data:`PAIRING_COLUMNS` only."""
        return self._add_jobs(PAIRING_COLUMNS)

    def _add_jobs(self, columns: str) -> Statement:
        s = self._s
        return Statement(
            self._returning_jobs(
                f"{s}.add_jobs(array("
                " select cast(row(spec.identifier, spec.payload, spec.queue_name, spec.run_at,"
                " spec.max_attempts, spec.job_key, spec.priority, spec.flags)"
                f" as {s}.job_spec)"
                f" from json_populate_recordset(cast(null as {s}.job_spec), cast(:specs as json))"
                " with ordinality as spec (identifier, payload, queue_name, run_at,"
                " max_attempts, job_key, priority, flags, position)"
                " order by spec.position),"
                " cast(:preserve_run_at as boolean))",
                columns=columns,
            ),
            {"specs": "json", "preserve_run_at": "boolean"},
        )

    # -- adding with COPY -----------------------------------------------------------------

    @cached_property
    def copy_register_names(self) -> Statement:
        """Register the task ``identifiers`` and ``queue_names`` (JSON arrays of text) not
        known yet, as ``add_jobs`` does, and return the id of each name as (is_queue, id,
        name) rows: the ones inserted here, then the ones the statement's snapshot sees. A
        name another transaction inserted while this one waited is in neither (the insert
        skipped it, the snapshot is older): run the statement again, and it sees it."""
        s = self._s
        return Statement(
            "with wanted_tasks as ("
            " select distinct name from json_array_elements_text(cast(:identifiers as json))"
            " as name),"
            " new_tasks as ("
            f" insert into {s}._private_tasks (identifier)"
            " select wanted.name from wanted_tasks as wanted"
            f" where not exists (select 1 from {s}._private_tasks as tasks"
            " where tasks.identifier = wanted.name)"
            " on conflict do nothing returning id, identifier),"
            " wanted_queues as ("
            " select distinct name from json_array_elements_text(cast(:queue_names as json))"
            " as name),"
            " new_queues as ("
            f" insert into {s}._private_job_queues (queue_name)"
            " select wanted.name from wanted_queues as wanted"
            f" where not exists (select 1 from {s}._private_job_queues as job_queues"
            " where job_queues.queue_name = wanted.name)"
            " on conflict do nothing returning id, queue_name)"
            " select false as is_queue, id, identifier as name from new_tasks"
            " union all"
            " select false, tasks.id, tasks.identifier"
            f" from {s}._private_tasks as tasks"
            " join wanted_tasks as wanted on wanted.name = tasks.identifier"
            " union all"
            " select true, id, queue_name from new_queues"
            " union all"
            " select true, job_queues.id, job_queues.queue_name"
            f" from {s}._private_job_queues as job_queues"
            " join wanted_queues as wanted on wanted.name = job_queues.queue_name",
            {"identifiers": "json", "queue_names": "json"},
        )

    @cached_property
    def copy_prepare(self) -> Statement:
        """The transaction's ``now()`` (``run_at`` of the jobs without one), the
        notification ``add_jobs`` sends (``count``: the number of jobs), and ``count`` ids
        from the jobs table's identity sequence."""
        return Statement(
            "select now(),"
            " pg_notify('jobs:insert',"
            """ '{"r":' || random()::text || ',"count":' || cast(:count as integer)::text"""
            " || '}'),"
            " array(select nextval(sequence.name)"
            " from (select cast(pg_get_serial_sequence("
            f"'{self._s}._private_jobs', 'id') as regclass) as name) as sequence,"
            " generate_series(1, cast(:count as integer)))",
            {"count": "integer"},
        )

    @cached_property
    def copy_into_jobs(self) -> Statement:
        """``COPY`` of :data:`COPY_COLUMNS` into the jobs table, from the client."""
        columns = ", ".join(COPY_COLUMNS)
        return Statement(f"copy {self._s}._private_jobs ({columns}) from stdin")

    # -- administering ------------------------------------------------------------------

    @cached_property
    def remove_job(self) -> Statement:
        """Remove the job with ``job_key`` (a locked one loses its key instead); one row,
        all null when no job has the key."""
        return Statement(
            self._returning_jobs(f"{self._s}.remove_job(cast(:job_key as text))"),
            {"job_key": "text"},
        )

    @cached_property
    def complete_jobs(self) -> Statement:
        """Delete the unlocked jobs of ``job_ids``; the deleted rows, by id."""
        return Statement(
            self._returning_jobs(
                f"{self._s}.complete_jobs(cast(:job_ids as bigint[]))", by_id=True
            ),
            {"job_ids": "bigint[]"},
        )

    @cached_property
    def permanently_fail_jobs(self) -> Statement:
        """Fail the unlocked jobs of ``job_ids`` for good with ``error_message``; the
        updated rows, by id."""
        return Statement(
            self._returning_jobs(
                f"{self._s}.permanently_fail_jobs(cast(:job_ids as bigint[]),"
                " cast(:error_message as text))",
                by_id=True,
            ),
            {"job_ids": "bigint[]", "error_message": "text"},
        )

    @cached_property
    def reschedule_jobs(self) -> Statement:
        """Overwrite ``run_at``, ``priority``, ``attempts``, ``max_attempts`` (each where
        not null) of the unlocked jobs of ``job_ids``; the updated rows, by id."""
        return Statement(
            self._returning_jobs(
                f"{self._s}.reschedule_jobs(cast(:job_ids as bigint[]),"
                " run_at => cast(:run_at as timestamptz),"
                " priority => cast(:priority as integer),"
                " attempts => cast(:attempts as integer),"
                " max_attempts => cast(:max_attempts as integer))",
                by_id=True,
            ),
            {
                "job_ids": "bigint[]",
                "run_at": "timestamptz",
                "priority": "integer",
                "attempts": "integer",
                "max_attempts": "integer",
            },
        )

    @cached_property
    def force_unlock_workers(self) -> Statement:
        """Unlock every job and queue locked by one of ``worker_ids``."""
        return Statement(
            f"select {self._s}.force_unlock_workers(cast(:worker_ids as text[]))",
            {"worker_ids": "text[]"},
        )

    @cached_property
    def cleanup(self) -> dict[str, Statement]:
        """The statement of each of :data:`CLEANUP_TASKS`: delete permanently failed
        unlocked jobs; delete task rows no job uses, except those in ``keep``; delete
        unlocked queues no job uses."""
        s = self._s
        return {
            "DELETE_PERMAFAILED_JOBS": Statement(
                f"delete from {s}._private_jobs as jobs"
                " where jobs.attempts = jobs.max_attempts and jobs.locked_at is null"
            ),
            "GC_TASK_IDENTIFIERS": Statement(
                f"delete from {s}._private_tasks as tasks where not exists"
                f" (select 1 from {s}._private_jobs as jobs where jobs.task_id = tasks.id)"
                " and tasks.identifier <> all(cast(:keep as text[]))",
                {"keep": "text[]"},
            ),
            "GC_JOB_QUEUES": Statement(
                f"delete from {s}._private_job_queues as job_queues"
                " where job_queues.locked_at is null and not exists"
                f" (select 1 from {s}._private_jobs as jobs"
                " where jobs.job_queue_id = job_queues.id)"
            ),
        }

    # -- naming -------------------------------------------------------------------------

    # The ids travel as one comma-separated text (:func:`~._worker.id_list`), as in the
    # worker's statements: an int[] parameter would cost asyncpg a type lookup on every new
    # connection.

    @cached_property
    def task_names(self) -> Statement:
        """``ids`` (:func:`~._worker.id_list`) -> (id, identifier) rows of those tasks."""
        return Statement(
            f"select id, identifier from {self._s}._private_tasks"
            " where id = any(cast(string_to_array(cast(:ids as text), ',') as integer[]))",
            {"ids": "text"},
        )

    @cached_property
    def queue_names(self) -> Statement:
        """``ids`` (:func:`~._worker.id_list`) -> (id, queue_name) rows of those queues."""
        return Statement(
            f"select id, queue_name from {self._s}._private_job_queues"
            " where id = any(cast(string_to_array(cast(:ids as text), ',') as integer[]))",
            {"ids": "text"},
        )
