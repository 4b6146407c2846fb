"""The statements that read the queue's health: the queue-level metrics and the doctor's
checks.

Every statement is built from constants and a validated, quoted schema name, takes its
values as bound parameters (``$1``, ...; none of them take more than a few), only reads,
and never depends on the order of rows a schema function returns.
"""

from __future__ import annotations

from ._identifiers import quote_identifier

#: The job states of the queue-level metrics (the command line's ``list --state``).
JOB_STATES = ("ready", "scheduled", "locked", "failed")

_STATE_FILTERS = {
    "ready": "j.locked_at is null and j.attempts < j.max_attempts and j.run_at <= now()",
    "scheduled": "j.locked_at is null and j.attempts < j.max_attempts and j.run_at > now()",
    "locked": "j.locked_at is not null",
    "failed": "j.locked_at is null and j.attempts >= j.max_attempts",
}


def queue_counts_sql(schema: str, *, by_queue: bool) -> str:
    """One row per task identifier (and named queue, when ``by_queue``) that has jobs:
    ``(task, queue, ready, scheduled, locked, failed, oldest_ready_seconds)``. ``queue`` is
    ``NULL`` for jobs outside named queues, and always when not ``by_queue``;
    ``oldest_ready_seconds`` is how long the longest-waiting ready job has been due
    (``NULL`` when none is ready). One scan of the jobs table, no locks taken."""
    s = quote_identifier(schema)
    counts = ",\n  ".join(
        f"count(*) filter (where {_STATE_FILTERS[state]}) as {state}" for state in JOB_STATES
    )
    queue = "q.queue_name" if by_queue else "null::text"
    join = f"\nleft join {s}._private_job_queues q on q.id = j.job_queue_id" if by_queue else ""
    group = "t.identifier, q.queue_name" if by_queue else "t.identifier"
    return (
        f"select t.identifier as task, {queue} as queue,\n  {counts},\n"
        "  extract(epoch from now() - min(j.run_at) filter"
        f" (where {_STATE_FILTERS['ready']}))::float8 as oldest_ready_seconds\n"
        f"from {s}._private_jobs j\njoin {s}._private_tasks t on t.id = j.task_id{join}\n"
        f"group by {group}"
    )


# -- the doctor's checks --------------------------------------------------------------

#: ``$1`` = schema name: whether ``add_jobs`` takes advisory locks (the Rust port's
#: revision 19) and whether the worker-recovery table of revision 20 exists.
SCHEMA_FEATURES_SQL = (
    "select coalesce(bool_or(pg_get_functiondef(p.oid) like '%pg_advisory_xact_lock%'), false)"
    " as locking_add_jobs,"
    " exists(select 1 from pg_class c join pg_namespace cn on cn.oid = c.relnamespace"
    " where cn.nspname = $1 and c.relname = '_private_workers') as has_workers_table"
    " from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
    " where n.nspname = $1 and p.proname = 'add_jobs'"
)

#: The server's connection limits and the client connections open now.
CONNECTIONS_SQL = (
    "select current_setting('max_connections')::int as max_connections,"
    " current_setting('superuser_reserved_connections')::int as reserved,"
    " (select count(*) from pg_stat_activity where backend_type = 'client backend')::int"
    " as in_use"
)

#: ``$1`` = seconds a transaction may last, ``$2`` = seconds a session may sit idle in one:
#: the other sessions of this database that break either rule, oldest first.
LONG_TRANSACTIONS_SQL = (
    "select pid, usename::text as usename, application_name, state,"
    " extract(epoch from now() - xact_start)::float8 as transaction_seconds,"
    " extract(epoch from now() - state_change)::float8 as state_seconds,"
    " left(query, 200) as query"
    " from pg_stat_activity"
    " where datname = current_database() and pid <> pg_backend_pid()"
    " and backend_type = 'client backend' and xact_start is not null"
    " and (now() - xact_start > make_interval(secs => $1)"
    " or (state like 'idle in transaction%' and now() - state_change > make_interval(secs => $2)))"
    " order by xact_start"
)

#: Prepared (two-phase) transactions of this database, which hold back vacuum until
#: committed or rolled back.
PREPARED_TRANSACTIONS_SQL = (
    "select gid, owner::text as owner, extract(epoch from now() - prepared)::float8 as seconds"
    " from pg_prepared_xacts where database = current_database() order by prepared"
)

#: ``$1`` = schema name: live and dead rows, size and vacuum times of the jobs table.
JOBS_TABLE_SQL = (
    "select n_live_tup as live, n_dead_tup as dead,"
    " pg_total_relation_size(relid) as bytes,"
    " greatest(last_vacuum, last_autovacuum) as last_vacuum"
    " from pg_stat_user_tables where schemaname = $1 and relname = '_private_jobs'"
)

#: The database's clock, read when the statement runs (not when its transaction began).
CLOCK_SQL = "select clock_timestamp()"


def stale_identifiers_sql(schema: str) -> str:
    """``$1`` = seconds: task identifiers with jobs that have been ready for longer than
    that, while no job of theirs is locked and their named queue (if any) is free: one row
    ``(task, ready, oldest_seconds)`` each, by identifier."""
    s = quote_identifier(schema)
    return (
        "select t.identifier as task, count(*) as ready,"
        " extract(epoch from now() - min(j.run_at))::float8 as oldest_seconds"
        f" from {s}._private_jobs j join {s}._private_tasks t on t.id = j.task_id"
        f" where {_STATE_FILTERS['ready']} and j.run_at < now() - make_interval(secs => $1)"
        f" and not exists (select 1 from {s}._private_jobs l"
        " where l.task_id = j.task_id and l.locked_at is not null)"
        f" and not exists (select 1 from {s}._private_job_queues q"
        " where q.id = j.job_queue_id and q.locked_at is not null)"
        " group by t.identifier order by t.identifier"
    )
