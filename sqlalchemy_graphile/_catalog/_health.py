"""The statements that read the queue's health: the queue-level metrics, the doctor's
checks and the check for jobs that no worker seems to handle.

Every statement only reads, and never depends on the order of rows a schema function
returns. Where a statement names the schema as a value (the statistics views), it is the
validated name written as a literal.
"""

from __future__ import annotations

from functools import cached_property

from .._identifiers import SchemaName
from ._statement import Statement

#: The job states of the queue-level metrics (the command line's ``list --state``).
JOB_STATES = ("ready", "scheduled", "locked", "failed")

_STATE_FILTERS = {
    "ready": "j.locked_at is null and j.attempts < j.max_attempts and j.run_at <= now()",
    "scheduled": "j.locked_at is null and j.attempts < j.max_attempts and j.run_at > now()",
    "locked": "j.locked_at is not null",
    "failed": "j.locked_at is null and j.attempts >= j.max_attempts",
}


class HealthStatements:
    """The health statements for one schema."""

    def __init__(self, schema: SchemaName) -> None:
        self.schema = schema
        self._s = schema.quoted
        # A validated name holds no quote.
        self._literal = f"'{schema}'"

    # -- the queue-level metrics ----------------------------------------------------------

    def queue_counts(self, *, by_queue: bool) -> Statement:
        """One row per task identifier (and named queue, when ``by_queue``) that has jobs:
        ``(task, queue, ready, scheduled, locked, failed, oldest_ready_seconds)``. ``queue``
        is ``NULL`` for jobs outside named queues, and always when not ``by_queue``;
        ``oldest_ready_seconds`` is how long the longest-waiting ready job has been due
        (``NULL`` when none is ready). One scan of the jobs table, no locks taken."""
        return self._queue_counts_by_queue if by_queue else self._queue_counts

    @cached_property
    def _queue_counts(self) -> Statement:
        return self._counts(by_queue=False)

    @cached_property
    def _queue_counts_by_queue(self) -> Statement:
        return self._counts(by_queue=True)

    def _counts(self, *, by_queue: bool) -> Statement:
        s = self._s
        counts = ",\n  ".join(
            f"count(*) filter (where {_STATE_FILTERS[state]}) as {state}" for state in JOB_STATES
        )
        queue = "q.queue_name" if by_queue else "null::text"
        join = f"\nleft join {s}._private_job_queues q on q.id = j.job_queue_id" if by_queue else ""
        group = "t.identifier, q.queue_name" if by_queue else "t.identifier"
        return Statement(
            f"select t.identifier as task, {queue} as queue,\n  {counts},\n"
            "  extract(epoch from now() - min(j.run_at) filter"
            f" (where {_STATE_FILTERS['ready']}))::float8 as oldest_ready_seconds\n"
            f"from {s}._private_jobs j\njoin {s}._private_tasks t on t.id = j.task_id{join}\n"
            f"group by {group}"
        )

    @cached_property
    def statement_timeout(self) -> Statement:
        """Set ``statement_timeout`` to ``milliseconds`` (text) for the transaction."""
        return Statement(
            "select set_config('statement_timeout', cast(:milliseconds as text), true)",
            {"milliseconds": "text"},
        )

    # -- ready jobs that nobody runs --------------------------------------------------------

    @cached_property
    def unhandled(self) -> Statement:
        """Task identifiers other than ``handled`` (text[]) with ready jobs, none of whose
        jobs is locked, the oldest ready for at least ``min_wait`` seconds: rows
        ``(identifier, ready, oldest_run_at)`` by identifier. Ready jobs are read through
        the partial index the fetch uses (``is_available``); jobs held back by a locked
        named queue are not ready."""
        s = self._s
        return Statement(
            "select tasks.identifier, count(*) as ready, min(jobs.run_at) as oldest_run_at"
            f" from {s}._private_jobs as jobs"
            f" join {s}._private_tasks as tasks on tasks.id = jobs.task_id"
            " where jobs.is_available"
            " and jobs.run_at <= now()"
            " and tasks.identifier <> all(cast(:handled as text[]))"
            " and (jobs.job_queue_id is null or jobs.job_queue_id not in ("
            f" select queues.id from {s}._private_job_queues as queues"
            " where queues.locked_at is not null))"
            " and jobs.task_id not in ("
            f" select running.task_id from {s}._private_jobs as running"
            " where running.locked_at is not null)"
            " group by tasks.identifier"
            " having min(jobs.run_at) <= now() - make_interval(secs => cast(:min_wait as float8))"
            " order by tasks.identifier",
            {"handled": "text[]", "min_wait": "float8"},
        )

    @cached_property
    def stale_identifiers(self) -> Statement:
        """Task identifiers with jobs that have been ready for longer than ``seconds``,
        while no job of theirs is locked and their named queue (if any) is free: one row
        ``(task, ready, oldest_seconds)`` each, by identifier."""
        s = self._s
        return Statement(
            "select t.identifier as task, count(*) as ready,"
            " extract(epoch from now() - min(j.run_at))::float8 as oldest_seconds"
            f" from {s}._private_jobs j join {s}._private_tasks t on t.id = j.task_id"
            f" where {_STATE_FILTERS['ready']}"
            " and j.run_at < now() - make_interval(secs => cast(:seconds as float8))"
            f" and not exists (select 1 from {s}._private_jobs l"
            " where l.task_id = j.task_id and l.locked_at is not null)"
            f" and not exists (select 1 from {s}._private_job_queues q"
            " where q.id = j.job_queue_id and q.locked_at is not null)"
            " group by t.identifier order by t.identifier",
            {"seconds": "float8"},
        )

    # -- the doctor's checks ----------------------------------------------------------------

    @cached_property
    def schema_features(self) -> Statement:
        """One row: whether ``add_jobs`` takes advisory locks (``locking_add_jobs``, the
        Rust port's revision 19) and whether the worker-recovery table of revision 20
        exists (``has_workers_table``)."""
        name = self._literal
        return Statement(
            "select coalesce(bool_or(pg_get_functiondef(p.oid) like '%pg_advisory_xact_lock%'),"
            " false) as locking_add_jobs,"
            " exists(select 1 from pg_class c join pg_namespace cn on cn.oid = c.relnamespace"
            f" where cn.nspname = {name} and c.relname = '_private_workers')"
            " as has_workers_table"
            " from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
            f" where n.nspname = {name} and p.proname = 'add_jobs'"
        )

    @cached_property
    def connections(self) -> Statement:
        """The server's connection limits and the client connections open now."""
        return Statement(
            "select current_setting('max_connections')::int as max_connections,"
            " current_setting('superuser_reserved_connections')::int as reserved,"
            " (select count(*) from pg_stat_activity where backend_type = 'client backend')::int"
            " as in_use"
        )

    @cached_property
    def long_transactions(self) -> Statement:
        """The other sessions of this database whose transaction is older than
        ``transaction_seconds`` or that sit idle in one for longer than ``idle_seconds``,
        oldest first."""
        return Statement(
            "select pid, usename::text as usename, application_name, state,"
            " extract(epoch from now() - xact_start)::float8 as transaction_seconds,"
            " extract(epoch from now() - state_change)::float8 as state_seconds,"
            " left(query, 200) as query"
            " from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid()"
            " and backend_type = 'client backend' and xact_start is not null"
            " and (now() - xact_start > make_interval(secs => cast(:transaction_seconds as float8))"
            " or (state like 'idle in transaction%'"
            " and now() - state_change > make_interval(secs => cast(:idle_seconds as float8))))"
            " order by xact_start",
            {"transaction_seconds": "float8", "idle_seconds": "float8"},
        )

    @cached_property
    def prepared_transactions(self) -> Statement:
        """Prepared (two-phase) transactions of this database, which hold back vacuum until
        committed or rolled back."""
        return Statement(
            "select gid, owner::text as owner,"
            " extract(epoch from now() - prepared)::float8 as seconds"
            " from pg_prepared_xacts where database = current_database() order by prepared"
        )

    @cached_property
    def jobs_table(self) -> Statement:
        """Live and dead rows, size and vacuum times of the jobs table (no row before the
        statistics know the table)."""
        return Statement(
            "select n_live_tup as live, n_dead_tup as dead,"
            " pg_total_relation_size(relid) as bytes,"
            " greatest(last_vacuum, last_autovacuum) as last_vacuum"
            f" from pg_stat_user_tables where schemaname = {self._literal}"
            " and relname = '_private_jobs'"
        )

    @cached_property
    def clock(self) -> Statement:
        """The database's clock, read when the statement runs (not when its transaction
        began)."""
        return Statement("select clock_timestamp()")
