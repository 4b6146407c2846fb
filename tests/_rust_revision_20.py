"""The Rust port's revision 20 as another runtime would leave it: the same objects, names and
signatures as ours, written differently (PL/pgSQL bodies, unqualified defaults), with its
ledger row. Tests apply it to a schema at 19 to check that we adopt it unchanged."""

from __future__ import annotations

from sqlalchemy_graphile import quote_identifier


def rust_revision_20(schema: str = "graphile_worker") -> str:
    """One multi-statement script that brings ``schema`` (at 19) to the Rust port's 20."""
    s = quote_identifier(schema)
    return f"""
insert into {s}.migrations (id, breaking) values (20, false);
create table {s}._private_workers (
  id text primary key,
  last_heartbeat_at timestamptz not null,
  started_at timestamptz not null default now(),
  metadata jsonb
);
create index _private_workers_last_heartbeat_at_idx on {s}._private_workers (last_heartbeat_at);
create function {s}.worker_heartbeat(worker_id text, metadata json default null)
returns void language plpgsql as $$
begin
  insert into {s}._private_workers as w (id, last_heartbeat_at, metadata)
  values ($1, now(), $2::jsonb)
  on conflict (id) do update
  set last_heartbeat_at = now(), metadata = coalesce(excluded.metadata, w.metadata);
end;
$$;
create function {s}.worker_deregister(worker_id text) returns void language plpgsql as $$
begin
  delete from {s}._private_workers where id = $1;
end;
$$;
create function {s}.list_stale_workers(stale_threshold interval)
returns table (worker_id text) language plpgsql as $$
begin
  return query select w.id from {s}._private_workers w
  where w.last_heartbeat_at < now() - $1;
end;
$$;
create function {s}.list_orphan_locked_workers(stale_threshold interval)
returns table (worker_id text) language plpgsql as $$
begin
  return query select distinct l.locked_by from (
    select j.locked_by, j.locked_at from {s}._private_jobs j where j.locked_by is not null
    union all
    select q.locked_by, q.locked_at from {s}._private_job_queues q where q.locked_by is not null
  ) l
  where l.locked_at < now() - $1
    and not exists (select 1 from {s}._private_workers w where w.id = l.locked_by);
end;
$$;
create function {s}.recover_dead_worker_jobs(worker_ids text[], recovery_delay interval
  default '0 seconds') returns integer language plpgsql as $$
declare
  n integer;
begin
  update {s}._private_jobs j
  set attempts = greatest(0, j.attempts - 1), locked_at = null, locked_by = null,
      run_at = greatest(j.run_at, now() + $2),
      last_error = 'Job recovered after worker interruption', updated_at = now()
  where j.locked_by = any($1);
  get diagnostics n = row_count;
  update {s}._private_job_queues q set locked_at = null, locked_by = null
  where q.locked_by = any($1);
  return n;
end;
$$;
create function {s}.delete_stale_workers(worker_ids text[]) returns void language plpgsql as $$
begin
  delete from {s}._private_workers where id = any($1);
end;
$$;
"""
