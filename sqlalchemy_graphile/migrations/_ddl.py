"""DDL of the job queue schema, in the form Graphile Worker's migration 19 leaves it.

The statements are written for this project. They produce the same catalog as Graphile
Worker (Node) revision 19: the same tables, columns, defaults, generated columns, identity
sequences, constraint / index / sequence names, the ``job_spec`` type, the ``jobs`` view,
row-level security and the seven SQL functions with their signatures and behaviour. That is
what lets Node, Rust and Python workers share one schema.

Every statement is a template with a single placeholder, ``{s}``: the schema name, validated
and quoted by :func:`sqlalchemy_graphile._identifiers.quote_identifier`. No other value is
ever formatted into SQL text.
"""

from __future__ import annotations

from .._identifiers import quote_identifier

#: Graphile Worker revision whose end state we install.
SCHEMA_REVISION = 19

#: Ledger ids that Graphile Worker (Node) marks as breaking.
BREAKING_MIGRATIONS = frozenset({1, 3, 11, 13, 14, 16, 19})

_TABLES = [
    """
    create table {s}._private_tasks (
      id integer generated always as identity (sequence name {s}.tasks_id_seq),
      identifier text not null,
      constraint tasks_pkey primary key (id),
      constraint tasks_identifier_key unique (identifier),
      constraint tasks_identifier_check check (length(identifier) <= 128)
    )
    """,
    """
    create table {s}._private_job_queues (
      id integer generated always as identity (sequence name {s}.job_queues_id_seq),
      queue_name text not null,
      locked_at timestamptz,
      locked_by text,
      is_available boolean not null generated always as (locked_at is null) stored,
      constraint job_queues_pkey1 primary key (id),
      constraint job_queues_queue_name_key unique (queue_name),
      constraint job_queues_queue_name_check check (length(queue_name) <= 128)
    )
    """,
    # Column order matters: the functions return this row type and clients read it.
    """
    create table {s}._private_jobs (
      id bigint generated always as identity (sequence name {s}.jobs_id_seq1),
      job_queue_id integer,
      task_id integer not null,
      payload json not null default '{{}}'::json,
      priority smallint not null default 0,
      run_at timestamptz not null default now(),
      attempts smallint not null default 0,
      max_attempts smallint not null default 25,
      last_error text,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      key text,
      locked_at timestamptz,
      locked_by text,
      revision integer not null default 0,
      flags jsonb,
      is_available boolean not null
        generated always as (locked_at is null and attempts < max_attempts) stored,
      constraint jobs_pkey1 primary key (id),
      constraint jobs_key_key1 unique (key),
      constraint jobs_key_check check (length(key) > 0 and length(key) <= 512),
      constraint jobs_max_attempts_check check (max_attempts >= 1)
    )
    """,
    """
    create index jobs_main_index on {s}._private_jobs
      using btree (priority, run_at) include (id, task_id, job_queue_id)
      where is_available = true
    """,
    """
    create index jobs_no_queue_index on {s}._private_jobs
      using btree (priority, run_at) include (id, task_id)
      where is_available = true and job_queue_id is null
    """,
    """
    create table {s}._private_known_crontabs (
      identifier text not null,
      known_since timestamptz not null,
      last_execution timestamptz,
      constraint known_crontabs_pkey primary key (identifier)
    )
    """,
    "alter table {s}._private_tasks enable row level security",
    "alter table {s}._private_job_queues enable row level security",
    "alter table {s}._private_jobs enable row level security",
    "alter table {s}._private_known_crontabs enable row level security",
    """
    create type {s}.job_spec as (
      identifier text,
      payload json,
      queue_name text,
      run_at timestamptz,
      max_attempts smallint,
      job_key text,
      priority smallint,
      flags text[]
    )
    """,
    # The public read interface: every job column except payload and the internals.
    """
    create view {s}.jobs as
      select
        jobs.id,
        job_queues.queue_name,
        tasks.identifier as task_identifier,
        jobs.priority,
        jobs.run_at,
        jobs.attempts,
        jobs.max_attempts,
        jobs.last_error,
        jobs.created_at,
        jobs.updated_at,
        jobs.key,
        jobs.locked_at,
        jobs.locked_by,
        jobs.revision,
        jobs.flags
      from {s}._private_jobs as jobs
      inner join {s}._private_tasks as tasks on tasks.id = jobs.task_id
      left join {s}._private_job_queues as job_queues on job_queues.id = jobs.job_queue_id
    """,
]

_ADD_JOBS = """
create function {s}.add_jobs(
  specs {s}.job_spec[],
  job_key_preserve_run_at boolean default false
) returns setof {s}._private_jobs
language plpgsql volatile
as $add_jobs$
begin
  -- Register every task identifier and queue name the specs mention. Known names are
  -- filtered out first: an insert that ends in a conflict still consumes an identity value,
  -- and the integer ids would otherwise run out after about two billion adds.
  insert into {s}._private_tasks (identifier)
    select distinct spec.identifier from unnest(specs) as spec
    where not exists (
      select 1 from {s}._private_tasks as tasks where tasks.identifier = spec.identifier
    )
  on conflict do nothing;

  insert into {s}._private_job_queues (queue_name)
    select distinct spec.queue_name from unnest(specs) as spec
    where spec.queue_name is not null
      and not exists (
        select 1 from {s}._private_job_queues as job_queues
        where job_queues.queue_name = spec.queue_name
      )
  on conflict do nothing;

  -- A keyed job that is running (locked) or out of attempts cannot be updated in place.
  -- It gives up its key and will not be retried; the insert below takes the key over.
  update {s}._private_jobs as jobs
     set key = null,
         attempts = jobs.max_attempts,
         updated_at = now()
    from unnest(specs) as spec
   where spec.job_key is not null
     and jobs.key = spec.job_key
     and jobs.is_available is not true;

  -- Wake listening workers. The count is the number of specs (an upper bound: some may
  -- turn into updates); an empty call sends an empty payload.
  perform pg_notify(
    'jobs:insert',
    '{{"r":' || random()::text || ',"count":' || nullif(cardinality(specs), 0)::text || '}}'
  );

  return query
  insert into {s}._private_jobs as jobs
    (job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags)
  select
    job_queues.id,
    tasks.id,
    coalesce(spec.payload, '{{}}'::json),
    coalesce(spec.run_at, now()),
    coalesce(spec.max_attempts, 25::smallint),
    spec.job_key,
    coalesce(spec.priority, 0::smallint),
    (select jsonb_object_agg(flag, true) from unnest(spec.flags) as flag)
  from unnest(specs) with ordinality as spec
    (identifier, payload, queue_name, run_at, max_attempts, job_key, priority, flags, position)
  inner join {s}._private_tasks as tasks on tasks.identifier = spec.identifier
  left join {s}._private_job_queues as job_queues on job_queues.queue_name = spec.queue_name
  order by spec.position
  on conflict (key) do update set
    job_queue_id = excluded.job_queue_id,
    task_id = excluded.task_id,
    -- Two JSON arrays accumulate (batch jobs); anything else is replaced.
    payload = case
      when json_typeof(jobs.payload) = 'array' and json_typeof(excluded.payload) = 'array'
        then (jobs.payload::jsonb || excluded.payload::jsonb)::json
      else excluded.payload
    end,
    max_attempts = excluded.max_attempts,
    run_at = case
      when job_key_preserve_run_at is true and jobs.attempts = 0 then jobs.run_at
      else excluded.run_at
    end,
    priority = excluded.priority,
    revision = jobs.revision + 1,
    flags = excluded.flags,
    attempts = 0,
    last_error = null,
    updated_at = now()
  where jobs.locked_at is null
  returning *;
end;
$add_jobs$
"""

_ADD_JOB = """
create function {s}.add_job(
  identifier text,
  payload json default null,
  queue_name text default null,
  run_at timestamptz default null,
  max_attempts integer default null,
  job_key text default null,
  priority integer default null,
  flags text[] default null,
  job_key_mode text default 'replace'
) returns {s}._private_jobs
language plpgsql volatile
as $add_job$
declare
  v_job {s}._private_jobs;
begin
  if add_job.job_key is null
     or add_job.job_key_mode is null
     or add_job.job_key_mode in ('replace', 'preserve_run_at') then
    select * into v_job
      from {s}.add_jobs(
        array[row(
          add_job.identifier,
          add_job.payload,
          add_job.queue_name,
          add_job.run_at,
          add_job.max_attempts::smallint,
          add_job.job_key,
          add_job.priority::smallint,
          add_job.flags
        )::{s}.job_spec],
        add_job.job_key_mode = 'preserve_run_at'
      )
     limit 1;
    return v_job;
  end if;

  if add_job.job_key_mode <> 'unsafe_dedupe' then
    raise exception
      'Invalid job_key_mode value, expected ''replace'', ''preserve_run_at'' or ''unsafe_dedupe''.'
      using errcode = 'GWBKM';
  end if;

  -- unsafe_dedupe: keep whatever job holds the key (pending, running or dead) and only
  -- bump its revision; insert a job only when the key is free.
  insert into {s}._private_tasks (identifier)
    select add_job.identifier
    where not exists (
      select 1 from {s}._private_tasks as tasks where tasks.identifier = add_job.identifier
    )
  on conflict do nothing;

  if add_job.queue_name is not null then
    insert into {s}._private_job_queues (queue_name)
      select add_job.queue_name
      where not exists (
        select 1 from {s}._private_job_queues as job_queues
        where job_queues.queue_name = add_job.queue_name
      )
    on conflict do nothing;
  end if;

  insert into {s}._private_jobs as jobs
    (job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags)
  select
    job_queues.id,
    tasks.id,
    coalesce(add_job.payload, '{{}}'::json),
    coalesce(add_job.run_at, now()),
    coalesce(add_job.max_attempts::smallint, 25::smallint),
    add_job.job_key,
    coalesce(add_job.priority::smallint, 0::smallint),
    (select jsonb_object_agg(flag, true) from unnest(add_job.flags) as flag)
  from {s}._private_tasks as tasks
  left join {s}._private_job_queues as job_queues
    on job_queues.queue_name = add_job.queue_name
  where tasks.identifier = add_job.identifier
  on conflict (key) do update set
    revision = jobs.revision + 1,
    updated_at = now()
  returning * into v_job;

  if v_job.revision = 0 then
    perform pg_notify('jobs:insert', '{{"r":' || random()::text || ',"count":1}}');
  end if;
  return v_job;
end;
$add_job$
"""

# "Unlocked" for the admin functions: no lock, or a lock older than four hours.
_UNLOCKED = "(jobs.locked_at is null or jobs.locked_at < now() - interval '4 hours')"

_COMPLETE_JOBS = (
    """
create function {s}.complete_jobs(job_ids bigint[])
returns setof {s}._private_jobs
language sql volatile
as $complete_jobs$
  delete from {s}._private_jobs as jobs
   where jobs.id = any(job_ids)
     and """
    + _UNLOCKED
    + """
  returning *;
$complete_jobs$
"""
)

_PERMANENTLY_FAIL_JOBS = (
    """
create function {s}.permanently_fail_jobs(job_ids bigint[], error_message text default null)
returns setof {s}._private_jobs
language sql volatile
as $permanently_fail_jobs$
  update {s}._private_jobs as jobs
     set last_error = coalesce(error_message, 'Manually marked as failed'),
         attempts = jobs.max_attempts,
         updated_at = now()
   where jobs.id = any(job_ids)
     and """
    + _UNLOCKED
    + """
  returning *;
$permanently_fail_jobs$
"""
)

_RESCHEDULE_JOBS = (
    """
create function {s}.reschedule_jobs(
  job_ids bigint[],
  run_at timestamptz default null,
  priority integer default null,
  attempts integer default null,
  max_attempts integer default null
) returns setof {s}._private_jobs
language sql volatile
as $reschedule_jobs$
  update {s}._private_jobs as jobs
     set run_at = coalesce(reschedule_jobs.run_at, jobs.run_at),
         priority = coalesce(reschedule_jobs.priority::smallint, jobs.priority),
         attempts = coalesce(reschedule_jobs.attempts::smallint, jobs.attempts),
         max_attempts = coalesce(reschedule_jobs.max_attempts::smallint, jobs.max_attempts),
         updated_at = now()
   where jobs.id = any(job_ids)
     and """
    + _UNLOCKED
    + """
  returning *;
$reschedule_jobs$
"""
)

_REMOVE_JOB = (
    """
create function {s}.remove_job(job_key text)
returns {s}._private_jobs
language plpgsql volatile strict
as $remove_job$
declare
  v_job {s}._private_jobs;
begin
  -- A job nobody is running is deleted outright.
  delete from {s}._private_jobs as jobs
   where jobs.key = remove_job.job_key
     and """
    + _UNLOCKED
    + """
  returning * into v_job;
  if found then
    perform pg_notify('jobs:insert', '{{"r":' || random()::text || ',"count":-1}}');
    return v_job;
  end if;

  -- A running job finishes its attempt but loses its key and is never retried.
  update {s}._private_jobs as jobs
     set key = null,
         attempts = jobs.max_attempts,
         updated_at = now()
   where jobs.key = remove_job.job_key
  returning * into v_job;
  return v_job;
end;
$remove_job$
"""
)

_FORCE_UNLOCK_WORKERS = """
create function {s}.force_unlock_workers(worker_ids text[])
returns void
language sql volatile
as $force_unlock_workers$
  update {s}._private_jobs as jobs
     set locked_at = null, locked_by = null
   where jobs.locked_by = any(worker_ids);
  update {s}._private_job_queues as job_queues
     set locked_at = null, locked_by = null
   where job_queues.locked_by = any(worker_ids);
$force_unlock_workers$
"""

_FUNCTIONS = [
    _ADD_JOBS,
    _ADD_JOB,
    _COMPLETE_JOBS,
    _PERMANENTLY_FAIL_JOBS,
    _RESCHEDULE_JOBS,
    _REMOVE_JOB,
    _FORCE_UNLOCK_WORKERS,
]

#: Signatures of the functions, as ``drop function`` needs them.
FUNCTION_SIGNATURES = [
    "add_job(text, json, text, timestamptz, integer, text, integer, text[], text)",
    "add_jobs({s}.job_spec[], boolean)",
    "complete_jobs(bigint[])",
    "permanently_fail_jobs(bigint[], text)",
    "reschedule_jobs(bigint[], timestamptz, integer, integer, integer)",
    "remove_job(text)",
    "force_unlock_workers(text[])",
]

_LEDGER = """
create table if not exists {s}.migrations (
  id integer not null,
  ts timestamptz not null default now(),
  breaking boolean not null default false,
  constraint migrations_pkey primary key (id)
)
"""


def _render(templates: list[str], schema: str) -> list[str]:
    quoted = quote_identifier(schema)
    return [t.format(s=quoted).strip() for t in templates]


def create_ledger_statements(schema: str) -> list[str]:
    """``create schema`` and the ``migrations`` ledger, both idempotent."""
    return _render(["create schema if not exists {s}", _LEDGER], schema)


def create_objects_statements(schema: str) -> list[str]:
    """Every object of the schema except the ledger, in dependency order."""
    return _render(_TABLES + _FUNCTIONS, schema)


def install_statements(schema: str) -> list[str]:
    """Every statement of a fresh install, in order, as plain SQL text.

    The schema and the ledger; the ledger rows 1..19 with Node's breaking flags, inserted
    before anything else as Graphile Worker does (a concurrent migrator of another runtime
    then clashes on the primary key instead of installing a second copy); every object; and
    the ``worker:migrate`` notification that tells running workers a breaking revision landed.
    Only constants are formatted in besides the quoted schema name.
    """
    rows = ", ".join(
        f"({n}, {'true' if n in BREAKING_MIGRATIONS else 'false'})"
        for n in range(1, SCHEMA_REVISION + 1)
    )
    notification = f'{{"migrationNumber": {SCHEMA_REVISION}, "breaking": true}}'
    return [
        *create_ledger_statements(schema),
        f"insert into {quote_identifier(schema)}.migrations (id, breaking) values {rows}",
        *create_objects_statements(schema),
        f"select pg_notify('worker:migrate', '{notification}')",
    ]


def drop_objects_statements(schema: str) -> list[str]:
    """Drop what :func:`create_objects_statements` and the ledger create (not the schema)."""
    drops = [f"drop function if exists {{s}}.{sig}" for sig in FUNCTION_SIGNATURES]
    drops += [
        "drop view if exists {s}.jobs",
        "drop type if exists {s}.job_spec",
        "drop table if exists {s}._private_jobs",
        "drop table if exists {s}._private_job_queues",
        "drop table if exists {s}._private_tasks",
        "drop table if exists {s}._private_known_crontabs",
        "drop table if exists {s}.migrations",
    ]
    return _render(drops, schema)
