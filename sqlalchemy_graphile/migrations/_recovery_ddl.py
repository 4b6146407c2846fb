"""DDL of the worker-recovery objects: ledger id 20, as the Graphile Worker Rust port names it.

Revision 20 of the Rust port adds a registry of live worker pools and the functions a
recovery sweep needs. The statements below are written for this project; they create objects
with the same names, signatures and behaviour, so that a schema where the Rust port applied
its revision 20 and one where we did are interchangeable, and Rust and Python workers see
each other's heartbeats. Revision 20 is not breaking: Graphile Worker (Node) 0.17 warns about
it and keeps running.

* ``_private_workers``: one row per registered worker pool (its lock owner id), with the time
  of its last heartbeat, when it registered, and free-form metadata. No row-level security.
* ``worker_heartbeat(worker_id, metadata)``: register or refresh; a NULL ``metadata`` keeps
  the stored one.
* ``worker_deregister(worker_id)``: forget a pool that exits cleanly.
* ``list_stale_workers(stale_threshold)``: registered pools whose heartbeat is older than
  the threshold.
* ``list_orphan_locked_workers(stale_threshold)``: lock owners of jobs or queues locked for
  longer than the threshold that have no registry row (for instance Node pools).
* ``recover_dead_worker_jobs(worker_ids, recovery_delay)``: give the jobs those owners hold
  back, with the interrupted attempt refunded, and unlock their queues; returns the job count.
* ``delete_stale_workers(worker_ids)``: delete those registry rows.

Every statement is a template with the single placeholder ``{s}``, the quoted schema name.
"""

from __future__ import annotations

from .._identifiers import quote_identifier

#: The ledger id of the worker-recovery objects (not breaking).
RECOVERY_REVISION = 20

#: ``last_error`` of a job given back by :data:`recover_dead_worker_jobs`.
RECOVERED_ERROR = "Job recovered after worker interruption"

_TABLE = """
create table {s}._private_workers (
  id text not null,
  last_heartbeat_at timestamptz not null,
  started_at timestamptz not null default now(),
  metadata jsonb,
  constraint _private_workers_pkey primary key (id)
)
"""

_INDEX = """
create index _private_workers_last_heartbeat_at_idx
  on {s}._private_workers using btree (last_heartbeat_at)
"""

# In a SQL function a column name wins over a parameter of the same name, so parameters
# that share a column's name are qualified with the function's name.
_WORKER_HEARTBEAT = """
create function {s}.worker_heartbeat(worker_id text, metadata json default null)
returns void
language sql volatile
as $worker_heartbeat$
  insert into {s}._private_workers as workers (id, last_heartbeat_at, metadata)
  values (worker_heartbeat.worker_id, now(), worker_heartbeat.metadata::jsonb)
  on conflict (id) do update
     set last_heartbeat_at = excluded.last_heartbeat_at,
         metadata = coalesce(excluded.metadata, workers.metadata);
$worker_heartbeat$
"""

_WORKER_DEREGISTER = """
create function {s}.worker_deregister(worker_id text)
returns void
language sql volatile
as $worker_deregister$
  delete from {s}._private_workers as workers where workers.id = worker_deregister.worker_id;
$worker_deregister$
"""

_LIST_STALE_WORKERS = """
create function {s}.list_stale_workers(stale_threshold interval)
returns table (worker_id text)
language sql volatile
as $list_stale_workers$
  select workers.id
    from {s}._private_workers as workers
   where workers.last_heartbeat_at < now() - stale_threshold;
$list_stale_workers$
"""

_LIST_ORPHAN_LOCKED_WORKERS = """
create function {s}.list_orphan_locked_workers(stale_threshold interval)
returns table (worker_id text)
language sql volatile
as $list_orphan_locked_workers$
  select owners.locked_by
    from (
      select jobs.locked_by
        from {s}._private_jobs as jobs
       where jobs.locked_by is not null and jobs.locked_at < now() - stale_threshold
      union
      select job_queues.locked_by
        from {s}._private_job_queues as job_queues
       where job_queues.locked_by is not null
         and job_queues.locked_at < now() - stale_threshold
    ) as owners
   where not exists (
     select 1 from {s}._private_workers as workers where workers.id = owners.locked_by
   );
$list_orphan_locked_workers$
"""

_RECOVER_DEAD_WORKER_JOBS = f"""
create function {{s}}.recover_dead_worker_jobs(
  worker_ids text[],
  recovery_delay interval default '00:00:00'::interval
)
returns integer
language sql volatile
as $recover_dead_worker_jobs$
  with recovered as (
    update {{s}}._private_jobs as jobs
       set attempts = greatest(0, jobs.attempts - 1),
           locked_at = null,
           locked_by = null,
           run_at = greatest(jobs.run_at, now() + recovery_delay),
           last_error = '{RECOVERED_ERROR}',
           updated_at = now()
     where jobs.locked_by = any(worker_ids)
    returning jobs.id
  ), unlocked_queues as (
    update {{s}}._private_job_queues as job_queues
       set locked_at = null, locked_by = null
     where job_queues.locked_by = any(worker_ids)
    returning job_queues.id
  )
  select count(*)::integer from recovered;
$recover_dead_worker_jobs$
"""

_DELETE_STALE_WORKERS = """
create function {s}.delete_stale_workers(worker_ids text[])
returns void
language sql volatile
as $delete_stale_workers$
  delete from {s}._private_workers as workers where workers.id = any(worker_ids);
$delete_stale_workers$
"""

#: Signatures of the functions, as ``drop function`` and ``to_regprocedure`` need them.
RECOVERY_FUNCTION_SIGNATURES = [
    "worker_heartbeat(text, json)",
    "worker_deregister(text)",
    "list_stale_workers(interval)",
    "list_orphan_locked_workers(interval)",
    "recover_dead_worker_jobs(text[], interval)",
    "delete_stale_workers(text[])",
]

#: The table, then the functions, in creation order.
_OBJECTS = [
    _TABLE,
    _INDEX,
    _WORKER_HEARTBEAT,
    _WORKER_DEREGISTER,
    _LIST_STALE_WORKERS,
    _LIST_ORPHAN_LOCKED_WORKERS,
    _RECOVER_DEAD_WORKER_JOBS,
    _DELETE_STALE_WORKERS,
]


def _render(templates: list[str], schema: str) -> list[str]:
    quoted = quote_identifier(schema)
    return [t.format(s=quoted).strip() for t in templates]


def create_recovery_statements(schema: str) -> list[str]:
    """The table, its index and the six functions, in dependency order (no ledger row)."""
    return _render(_OBJECTS, schema)


def install_recovery_statements(schema: str) -> list[str]:
    """A fresh install of revision 20 on a schema at 19: the ledger row ``(20, false)``
    first, as Graphile Worker's migrators do, then every object. No notification: the
    revision is not breaking, and the Rust port sends none either."""
    ledger_row = (
        f"insert into {quote_identifier(schema)}.migrations (id, breaking)"
        f" values ({RECOVERY_REVISION}, false)"
    )
    return [ledger_row, *create_recovery_statements(schema)]


def drop_recovery_objects_statements(schema: str) -> list[str]:
    """Drop the six functions and the table (its index goes with it); leaves the ledger."""
    drops = [f"drop function if exists {{s}}.{sig}" for sig in RECOVERY_FUNCTION_SIGNATURES]
    drops.append("drop table if exists {s}._private_workers")
    return _render(drops, schema)


def uninstall_recovery_statements(schema: str) -> list[str]:
    """Bring a schema at 20 back to 19: drop the objects and the ledger row 20."""
    return [
        *drop_recovery_objects_statements(schema),
        f"delete from {quote_identifier(schema)}.migrations where id = {RECOVERY_REVISION}",
    ]


def missing_recovery_objects_sql(schema: str) -> str:
    """One row, one column: the names of the revision-20 objects absent from ``schema``
    (an empty array when all are there). Takes no parameters."""
    quoted = quote_identifier(schema)
    names = [f"{quoted}._private_workers"] + [
        f"{quoted}.{sig}" for sig in RECOVERY_FUNCTION_SIGNATURES
    ]
    checks = [f"case when to_regclass({_literal(names[0])}) is null then {_literal(names[0])} end"]
    checks += [
        f"case when to_regprocedure({_literal(name)}) is null then {_literal(name)} end"
        for name in names[1:]
    ]
    return f"select array_remove(array[{', '.join(checks)}]::text[], null)"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
