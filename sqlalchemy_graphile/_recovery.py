"""Crash recovery, shared by the worker (asyncpg) and :class:`WorkerUtils` (SQLAlchemy).

Worker pools register in ``_private_workers`` (revision 20) and refresh their heartbeat
there. The recovery sweep (:func:`sweep_stale_workers`) finds the registered pools whose
heartbeat is older than a threshold, gives back the jobs and queue locks they hold with the
Rust port's semantics (``recover_dead_worker_jobs``: attempt refunded, unlocked, ``run_at``
at least ``now() + recovery_delay``) and deletes their rows, all in one transaction behind
the Rust port's advisory lock, so that any number of sweepers, ours or Rust's, recover a
dead pool once.

This module imports neither SQLAlchemy nor asyncpg: the statements use ``:name`` parameters
(never followed by ``::``, so SQLAlchemy's ``text()`` reads them), and :func:`numbered`
rewrites them for asyncpg. A caller runs them through an :data:`Execute` function. The sweep
is a single statement, so it holds its locks for one round trip only.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from ._identifiers import quote_identifier

#: The advisory lock the Rust port's sweepers take (``pg_try_advisory_xact_lock(int, int)``:
#: "GWRS", "SWEP"), so that its sweepers and ours never sweep at the same time.
SWEEP_LOCK = (0x47575253, 0x53574550)

#: The flag that marks a job whose worker gets ``resilient_threshold_multiplier`` times
#: the threshold before it counts as dead (the Rust port's default).
DEFAULT_RESILIENT_FLAGS = ("infrastructure_resilient",)

#: Runs one statement with named parameters and returns its rows (tuples), inside the
#: caller's transaction.
Execute = Callable[[str, Mapping[str, Any]], Awaitable[Sequence[Sequence[Any]]]]


@dataclass(frozen=True, slots=True)
class SweepSettings:
    """How the sweep judges a worker dead and what it does with its jobs (seconds).

    * ``threshold``: a registered worker whose heartbeat is older than this is dead;
    * ``resilient_flags`` / ``resilient_multiplier``: a worker holding a job with any of
      these flags is dead only once its heartbeat is ``threshold * resilient_multiplier``
      old;
    * ``recovery_delay``: recovered jobs run again no sooner than this after the sweep;
    * ``recover_unregistered``: also recover locks older than ``threshold`` held by owners
      that never registered (the Rust port's orphan rule). Off by default: Graphile Worker
      (Node) never registers, so this would hand its long jobs to a second worker while
      they still run.
    """

    threshold: float = 300.0
    recovery_delay: float = 0.0
    resilient_flags: tuple[str, ...] = DEFAULT_RESILIENT_FLAGS
    resilient_multiplier: float = 3.0
    recover_unregistered: bool = False


@dataclass(frozen=True, slots=True)
class RecoveredJob:
    """A job a sweep gave back (or would give back, in a dry run)."""

    id: int
    task_identifier: str
    queue_name: str | None
    attempts: int
    #: The dead lock owner that held it.
    locked_by: str


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep found and did.

    ``swept`` is ``False`` when another sweeper held the lock (nothing was looked at).
    ``dead_workers`` are the registered workers judged dead, ``orphans`` the unregistered
    owners recovered under ``recover_unregistered``; ``jobs`` the jobs given back and
    ``queues`` the number of queue locks cleared. In a dry run nothing was changed.
    """

    swept: bool
    dry_run: bool
    dead_workers: tuple[str, ...] = ()
    orphans: tuple[str, ...] = ()
    jobs: tuple[RecoveredJob, ...] = ()
    queues: int = 0
    jobs_per_worker: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RegisteredWorker:
    """A row of ``_private_workers``, with what it holds now."""

    id: str
    started_at: datetime
    last_heartbeat_at: datetime
    heartbeat_age: float
    metadata: dict[str, Any] | None
    job_ids: tuple[int, ...]
    queues: tuple[str, ...]


def numbered(statement: str, names: Sequence[str]) -> str:
    """``statement`` with ``:name`` parameters as asyncpg's ``$1``, ``$2``, ... in the order
    of ``names``. Raises ``KeyError`` for a parameter not in ``names``."""
    positions = {name: index + 1 for index, name in enumerate(names)}
    return re.sub(r"(?<![:\w]):(\w+)", lambda m: f"${positions[m.group(1)]}", statement)


@dataclass(frozen=True)
class RecoveryStatements:
    """The statements for one schema (see :func:`recovery_statements`)."""

    schema: str

    @property
    def _s(self) -> str:
        return quote_identifier(self.schema)

    @property
    def available(self) -> str:
        """One row: whether the schema has the revision-20 registry."""
        literal = "'" + f"{self._s}._private_workers".replace("'", "''") + "'"
        return f"select to_regclass({literal}) is not null"

    @property
    def heartbeat(self) -> str:
        """:worker_id, :metadata (JSON text or null): register or refresh."""
        return (
            f"select {self._s}.worker_heartbeat(cast(:worker_id as text), cast(:metadata as json))"
        )

    @property
    def deregister(self) -> str:
        """:worker_id: forget a pool that exits cleanly."""
        return f"select {self._s}.worker_deregister(cast(:worker_id as text))"

    @property
    def sweep(self) -> str:
        """The whole sweep as one statement (so one short implicit transaction, with no
        round trip while it holds locks). Parameters: :threshold (interval), :flags
        (text[]), :multiplier, :unregistered (also recover orphan owners), :delay
        (interval), :dry_run. One row: whether the sweep lock was taken, the dead owners
        and the jobs they held (JSON text), and the number of queue locks they held.

        Every step is a materialized CTE whose first column reads the one before it, so
        they run in order (a CTE runs once, when first read; a target list is evaluated
        left to right): the lock (without waiting; nothing else runs without it), the dead owners,
        what they hold, then (unless a dry run) ``recover_dead_worker_jobs``,
        ``delete_stale_workers`` and the ``jobs:insert`` notification. The listing
        functions are volatile, so they read the database as it is once the lock is held;
        what the dead owners held is read with the statement's snapshot, before recovery.
        """
        s = self._s
        return f"""
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
"""

    @property
    def next_stale(self) -> str:
        """:threshold (interval), :worker_id: seconds (on the database clock) until the
        registered worker other than ``worker_id`` with the oldest heartbeat goes stale
        unless it beats again; negative if one is stale already, null if there is none."""
        return (
            "select extract(epoch from min(workers.last_heartbeat_at)"
            " + cast(:threshold as interval) - now())::float8"
            f" from {self._s}._private_workers as workers"
            " where workers.id <> cast(:worker_id as text)"
        )

    @property
    def list_workers(self) -> str:
        """Every registered worker with its heartbeat age (seconds, on the database
        clock), the ids of the jobs it holds and the names of the queues it has locked."""
        s = self._s
        return (
            "select workers.id, workers.started_at, workers.last_heartbeat_at,"
            " extract(epoch from now() - workers.last_heartbeat_at)::float8,"
            " workers.metadata::text,"
            f" array(select jobs.id from {s}._private_jobs as jobs"
            " where jobs.locked_by = workers.id order by jobs.id),"
            f" array(select job_queues.queue_name from {s}._private_job_queues as job_queues"
            " where job_queues.locked_by = workers.id order by 1)"
            f" from {s}._private_workers as workers order by workers.started_at, workers.id"
        )


@cache
def recovery_statements(schema: str) -> RecoveryStatements:
    """The statements for ``schema`` (validated and quoted; raises
    :class:`InvalidIdentifierError` for an unsafe name)."""
    quote_identifier(schema)
    return RecoveryStatements(schema)


async def sweep_stale_workers(
    execute: Execute, schema: str, settings: SweepSettings, *, dry_run: bool = False
) -> SweepResult:
    """Run one recovery sweep through ``execute``: one statement (see
    :attr:`RecoveryStatements.sweep`), which changes nothing before it commits.

    Takes the sweep lock without waiting: if another sweeper holds it, returns a result with
    ``swept=False``. Otherwise finds the dead workers (and, under ``recover_unregistered``,
    the orphan owners) and the jobs they hold, and unless ``dry_run`` gives those jobs back,
    unlocks their queues, deletes the dead workers' rows and, when jobs were given back with
    no delay, sends ``jobs:insert`` so that idle workers fetch them at once. Database errors
    propagate.
    """
    ((swept, dead_json, jobs_json, queues),) = await execute(
        recovery_statements(schema).sweep,
        {
            "threshold": timedelta(seconds=settings.threshold),
            "flags": list(settings.resilient_flags),
            "multiplier": float(settings.resilient_multiplier),
            "unregistered": settings.recover_unregistered,
            "delay": timedelta(seconds=settings.recovery_delay),
            "dry_run": dry_run,
        },
    )
    if not swept:
        return SweepResult(swept=False, dry_run=dry_run)
    owners = json.loads(dead_json)
    jobs = tuple(
        RecoveredJob(
            id=job_id, task_identifier=task, queue_name=queue, attempts=attempts, locked_by=owner
        )
        for job_id, task, queue, attempts, owner in json.loads(jobs_json)
    )
    per_worker = {owner: 0 for owner, _unregistered in owners}
    for job in jobs:
        per_worker[job.locked_by] += 1
    return SweepResult(
        swept=True,
        dry_run=dry_run,
        dead_workers=tuple(owner for owner, unregistered in owners if not unregistered),
        orphans=tuple(owner for owner, unregistered in owners if unregistered),
        jobs=jobs,
        queues=int(queues),
        jobs_per_worker=per_worker,
    )


async def list_registered_workers(execute: Execute, schema: str) -> list[RegisteredWorker]:
    """Every registered worker, oldest first, with its heartbeat age and what it holds."""
    rows = await execute(recovery_statements(schema).list_workers, {})
    return [
        RegisteredWorker(
            id=row[0],
            started_at=row[1],
            last_heartbeat_at=row[2],
            heartbeat_age=float(row[3]),
            metadata=None if row[4] is None else json.loads(row[4]),
            job_ids=tuple(row[5]),
            queues=tuple(row[6]),
        )
        for row in rows
    ]


def heartbeat_metadata(
    *, version: str, concurrency: int, tasks: Sequence[str], process_started_at: datetime
) -> str:
    """The JSON metadata a pool registers with: ``hostname``, ``pid``, ``process_started_at``
    (ISO 8601), ``runtime``, ``version``, ``concurrency`` and ``tasks``."""
    return json.dumps(
        {
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "process_started_at": process_started_at.isoformat(),
            "runtime": f"python {sys.version_info.major}.{sys.version_info.minor}",
            "version": version,
            "concurrency": concurrency,
            "tasks": list(tasks),
        },
        separators=(",", ":"),
    )
