"""The ``rust`` schema flavour: our schema with ``add_jobs`` and ``add_job`` as the Rust port's
migration 19 changes them, and the worker-recovery objects of its migration 20.

Written from the behaviour the port documents (not from its code): its ``add_jobs`` first
takes a transaction-level advisory lock on ``hashtext(job_key)`` for each distinct key, in
key order, then locks the rows already holding those keys (``for update``), then does what
Node's does; so a concurrent writer of the same key waits instead of making the call return
no row for it. Here the rest is our own body (Node's steps, except that known task and queue
names are not inserted again), so this flavour differs from ours exactly by the port's
changes. Its ``add_job`` raises ``GWNOR`` where Node's returns no row. Migration 20
adds the ``_private_workers`` table and its functions (heartbeat, deregister, stale and
orphan listings, recovery), recorded in the ledger as id 20, not breaking.
"""

from __future__ import annotations

from typing import Any

import psycopg

from sqlalchemy_graphile import quote_identifier
from sqlalchemy_graphile.migrations import _ddl
from sqlalchemy_graphile.migrations._recovery_ddl import uninstall_recovery_statements
from sqlalchemy_graphile.testing import database_url, load_schema

SCHEMA = "graphile_worker"

# Runs first in add_jobs: serialise writers of the same keys, then hold the keyed rows.
_LOCK_KEYS = """
  perform pg_advisory_xact_lock(hashtext(keys.job_key))
     from (
       select distinct spec.job_key from unnest(specs) as spec
        where spec.job_key is not null
        order by spec.job_key
     ) as keys;

  perform 1
     from {s}._private_jobs as jobs
    where jobs.key in (
      select spec.job_key from unnest(specs) as spec where spec.job_key is not null
    )
      for update;

"""

_NO_ROW_IS_AN_ERROR = """
     limit 1;
    if v_job.id is null then
      raise exception 'Unable to schedule job for key "%"', add_job.job_key
        using errcode = 'GWNOR';
    end if;
    return v_job;"""

_MIGRATION_20 = [
    """
create table {s}._private_workers (
  id text primary key,
  last_heartbeat_at timestamptz not null,
  started_at timestamptz not null default now(),
  metadata jsonb
)
""",
    "create index _private_workers_last_heartbeat_at_idx"
    " on {s}._private_workers (last_heartbeat_at)",
    """
create function {s}.worker_heartbeat(worker_id text, metadata json default null)
returns void language sql volatile as $$
  insert into {s}._private_workers as workers (id, last_heartbeat_at, metadata)
  values (worker_id, now(), metadata::jsonb)
  on conflict (id) do update set
    last_heartbeat_at = now(),
    metadata = coalesce(excluded.metadata, workers.metadata)
$$
""",
    """
create function {s}.worker_deregister(worker_id text)
returns void language sql volatile as $$
  delete from {s}._private_workers where id = worker_id
$$
""",
    """
create function {s}.list_stale_workers(stale_threshold interval)
returns table (worker_id text) language sql stable as $$
  select id from {s}._private_workers where last_heartbeat_at < now() - stale_threshold
$$
""",
    """
create function {s}.list_orphan_locked_workers(stale_threshold interval)
returns table (worker_id text) language sql stable as $$
  select distinct holders.locked_by
    from (
      select locked_by, locked_at from {s}._private_jobs
      union all
      select locked_by, locked_at from {s}._private_job_queues
    ) as holders
   where holders.locked_by is not null
     and holders.locked_at < now() - stale_threshold
     and not exists (select 1 from {s}._private_workers as w where w.id = holders.locked_by)
$$
""",
    """
create function {s}.recover_dead_worker_jobs(
  worker_ids text[], recovery_delay interval default '0 seconds'
) returns integer language plpgsql volatile as $$
declare
  v_count integer;
begin
  update {s}._private_jobs as jobs
     set attempts = greatest(0, jobs.attempts - 1),
         locked_at = null,
         locked_by = null,
         run_at = greatest(jobs.run_at, now() + recovery_delay),
         last_error = 'Job recovered after worker interruption',
         updated_at = now()
   where jobs.locked_by = any(worker_ids);
  get diagnostics v_count = row_count;
  update {s}._private_job_queues as queues
     set locked_at = null, locked_by = null
   where queues.locked_by = any(worker_ids);
  return v_count;
end;
$$
""",
    """
create function {s}.delete_stale_workers(worker_ids text[])
returns void language sql volatile as $$
  delete from {s}._private_workers where id = any(worker_ids)
$$
""",
    "insert into {s}.migrations (id, breaking) values (20, false)",
]


def rust_statements(schema: str = SCHEMA) -> list[str]:
    """What turns our installed schema into the ``rust`` flavour."""
    add_jobs = _ddl._ADD_JOBS.replace("create function", "create or replace function", 1)
    assert add_jobs.count("\nbegin\n") == 1
    add_jobs = add_jobs.replace("\nbegin\n", "\nbegin\n" + _LOCK_KEYS, 1)
    add_job = _ddl._ADD_JOB.replace("create function", "create or replace function", 1)
    replace_path_end = "\n     limit 1;\n    return v_job;"
    assert add_job.count(replace_path_end) == 1
    add_job = add_job.replace(replace_path_end, _NO_ROW_IS_AN_ERROR, 1)
    quoted = quote_identifier(schema)
    # Our install has revision 20 already: the port's own objects and ledger row replace it.
    ours = uninstall_recovery_statements(schema)
    return [*ours, *(t.format(s=quoted).strip() for t in [add_jobs, add_job, *_MIGRATION_20])]


def load_rust_schema(
    host: str, port: int | str, user: str, dbname: str, password: str | None = None, **_: Any
) -> None:
    """A pytest-postgresql ``load`` callable: our schema, then the ``rust`` flavour's changes."""
    load_schema(host=host, port=port, user=user, dbname=dbname, password=password)
    url = database_url(host=host, port=port, user=user, dbname=dbname, password=password)
    with psycopg.connect(url.render_as_string(hide_password=False)) as connection:
        for statement in rust_statements():
            connection.execute(statement)
