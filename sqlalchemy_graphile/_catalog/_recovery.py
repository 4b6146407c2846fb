"""The statements of crash recovery: the registry of worker pools (revision 20), their
heartbeats, and the recovery sweep.

Worker pools register in ``_private_workers`` and refresh their heartbeat there. The sweep
finds the registered pools whose heartbeat is older than a threshold, gives back the jobs
and queue locks they hold with the Rust port's semantics (``recover_dead_worker_jobs``:
attempt refunded, unlocked, ``run_at`` at least ``now() + recovery_delay``) and deletes
their rows, all in one statement behind the Rust port's advisory lock, so that any number
of sweepers, ours or Rust's, recover a dead pool once, and the sweep holds its locks for
one round trip only.
"""

from __future__ import annotations

from functools import cached_property

from .._identifiers import SchemaName
from ._statement import Statement

#: The advisory lock the Rust port's sweepers take (``pg_try_advisory_xact_lock(int, int)``:
#: "GWRS", "SWEP"), so that its sweepers and ours never sweep at the same time.
SWEEP_LOCK = (0x47575253, 0x53574550)


class RecoveryStatements:
    """Crash recovery's statements for one schema."""

    def __init__(self, schema: SchemaName) -> None:
        self.schema = schema
        self._s = schema.quoted

    @cached_property
    def available(self) -> Statement:
        """One row: whether the schema has the revision-20 registry."""
        literal = "'" + f"{self._s}._private_workers".replace("'", "''") + "'"
        return Statement(f"select to_regclass({literal}) is not null")

    @cached_property
    def heartbeat(self) -> Statement:
        """Register ``worker_id`` or refresh its heartbeat; ``metadata`` (JSON text or
        null) replaces the stored metadata when given."""
        return Statement(
            f"select {self._s}.worker_heartbeat(cast(:worker_id as text), cast(:metadata as json))",
            {"worker_id": "text", "metadata": "json"},
        )

    @cached_property
    def deregister(self) -> Statement:
        """Forget ``worker_id``, a pool that exits cleanly."""
        return Statement(
            f"select {self._s}.worker_deregister(cast(:worker_id as text))",
            {"worker_id": "text"},
        )

    @cached_property
    def sweep(self) -> Statement:
        """The whole sweep as one statement (so one short implicit transaction, with no
        round trip while it holds locks). Parameters: ``threshold`` (interval), ``flags``
        (text[]), ``multiplier``, ``unregistered`` (also recover orphan owners), ``delay``
        (interval), ``dry_run``. One row: whether the sweep lock was taken, the dead owners
        and the jobs they held (JSON text), and the number of queue locks they held.

        Every step is a materialized CTE whose first column reads the one before it, so
        they run in order (a CTE runs once, when first read; a target list is evaluated
        left to right): the lock (without waiting; nothing else runs without it), the dead
        owners, what they hold, then (unless a dry run) ``recover_dead_worker_jobs``,
        ``delete_stale_workers`` and the ``jobs:insert`` notification. The listing
        functions are volatile, so they read the database as it is once the lock is held;
        what the dead owners held is read with the statement's snapshot, before recovery.
        """
        s = self._s
        return Statement(
            f"""
with lock as materialized (
  select pg_try_advisory_xact_lock({SWEEP_LOCK[0]}, {SWEEP_LOCK[1]}) as acquired
), dead as materialized (
  select stale.worker_id, false as unregistered
    from {s}.list_stale_workers(cast(:threshold as interval)) as stale
   where (select lock.acquired from lock)
     and not exists (
       select 1 from {s}._private_jobs as jobs
         join {s}._private_workers as workers on workers.id = jobs.locked_by
        where jobs.locked_by = stale.worker_id
          and jobs.flags ?| cast(:flags as text[])
          and workers.last_heartbeat_at
              >= now() - cast(:threshold as interval) * cast(:multiplier as float8))
  union all
  select orphans.worker_id, true
    from {s}.list_orphan_locked_workers(cast(:threshold as interval)) as orphans
   where (select lock.acquired from lock) and cast(:unregistered as boolean)
), held as materialized (
  select jobs.id, tasks.identifier, job_queues.queue_name, jobs.attempts, jobs.locked_by
    from {s}._private_jobs as jobs
    join dead on dead.worker_id = jobs.locked_by
    join {s}._private_tasks as tasks on tasks.id = jobs.task_id
    left join {s}._private_job_queues as job_queues on job_queues.id = jobs.job_queue_id
), held_queues as materialized (
  select count(*) as count
    from {s}._private_job_queues as job_queues
    join dead on dead.worker_id = job_queues.locked_by
), recovered as materialized (
  select (select count(*) from held) + (select held_queues.count from held_queues) as read,
         case when not cast(:dry_run as boolean) and exists (select 1 from dead)
              then {s}.recover_dead_worker_jobs(
                     array(select dead.worker_id from dead), cast(:delay as interval))
         end as count
), deleted as materialized (
  select (select count(*) from recovered) as after,
         case when not cast(:dry_run as boolean)
                   and exists (select 1 from dead where not dead.unregistered)
              then {s}.delete_stale_workers(
                     array(select dead.worker_id from dead where not dead.unregistered))
                   is null
         end as done
), notified as materialized (
  select (select count(*) from deleted) as after,
         case when not cast(:dry_run as boolean) and cast(:delay as interval) = interval '0'
                   and exists (select 1 from held)
              then pg_notify('jobs:insert', json_build_object(
                     'r', random(), 'count', (select count(*) from held))::text) is null
         end as done
)
select (select count(*) from notified) >= 0 and (select lock.acquired from lock),
       cast(coalesce((select json_agg(json_build_array(dead.worker_id, dead.unregistered)
                                      order by dead.worker_id) from dead), '[]') as text),
       cast(coalesce((select json_agg(json_build_array(held.id, held.identifier,
                                        held.queue_name, held.attempts, held.locked_by)
                                      order by held.id) from held), '[]') as text),
       (select held_queues.count from held_queues)
""",
            {
                "threshold": "interval",
                "flags": "text[]",
                "multiplier": "float8",
                "unregistered": "boolean",
                "delay": "interval",
                "dry_run": "boolean",
            },
        )

    @cached_property
    def next_stale(self) -> Statement:
        """Seconds (on the database clock) until the registered worker other than
        ``worker_id`` with the oldest heartbeat goes stale after ``threshold`` (interval)
        unless it beats again; negative if one is stale already, null if there is none."""
        return Statement(
            "select extract(epoch from min(workers.last_heartbeat_at)"
            " + cast(:threshold as interval) - now())::float8"
            f" from {self._s}._private_workers as workers"
            " where workers.id <> cast(:worker_id as text)",
            {"threshold": "interval", "worker_id": "text"},
        )

    @cached_property
    def list_workers(self) -> Statement:
        """Every registered worker with its heartbeat age (seconds, on the database
        clock), the ids of the jobs it holds and the names of the queues it has locked."""
        s = self._s
        return Statement(
            "select workers.id, workers.started_at, workers.last_heartbeat_at,"
            " extract(epoch from now() - workers.last_heartbeat_at)::float8,"
            " workers.metadata::text,"
            f" array(select jobs.id from {s}._private_jobs as jobs"
            " where jobs.locked_by = workers.id order by jobs.id),"
            f" array(select job_queues.queue_name from {s}._private_job_queues as job_queues"
            " where job_queues.locked_by = workers.id order by 1)"
            f" from {s}._private_workers as workers order by workers.started_at, workers.id"
        )
