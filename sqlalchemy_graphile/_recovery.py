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
rewrites them for asyncpg. A caller runs them through an :data:`Execute` function inside a
transaction it owns.
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
    def try_lock(self) -> str:
        """The sweep's transaction-level advisory lock (no parameters)."""
        return f"select pg_try_advisory_xact_lock({SWEEP_LOCK[0]}, {SWEEP_LOCK[1]})"

    @property
    def dead_workers(self) -> str:
        """:threshold, :flags, :multiplier: registered workers whose heartbeat is older than
        the threshold, except those holding a job with a resilient flag whose heartbeat is
        younger than ``threshold * multiplier``."""
        s = self._s
        return (
            f"select stale.worker_id from {s}.list_stale_workers(cast(:threshold as interval))"
            " as stale where not exists ("
            f" select 1 from {s}._private_jobs as jobs"
            f" join {s}._private_workers as workers on workers.id = jobs.locked_by"
            " where jobs.locked_by = stale.worker_id"
            " and jobs.flags ?| cast(:flags as text[])"
            " and workers.last_heartbeat_at"
            " >= now() - cast(:threshold as interval) * cast(:multiplier as float8))"
            " order by 1"
        )

    @property
    def orphans(self) -> str:
        """:threshold: unregistered owners of locks older than the threshold."""
        return (
            f"select orphans.worker_id from"
            f" {self._s}.list_orphan_locked_workers(cast(:threshold as interval)) as orphans"
            " order by 1"
        )

    @property
    def held_jobs(self) -> str:
        """:owners: the jobs these owners hold, locked for the rest of the transaction."""
        s = self._s
        return (
            "select jobs.id, tasks.identifier, job_queues.queue_name, jobs.attempts,"
            f" jobs.locked_by from {s}._private_jobs as jobs"
            f" join {s}._private_tasks as tasks on tasks.id = jobs.task_id"
            f" left join {s}._private_job_queues as job_queues"
            " on job_queues.id = jobs.job_queue_id"
            " where jobs.locked_by = any(cast(:owners as text[]))"
            " order by jobs.id for update of jobs"
        )

    @property
    def held_queues(self) -> str:
        """:owners: how many queue locks these owners hold."""
        return (
            f"select count(*) from {self._s}._private_job_queues as job_queues"
            " where job_queues.locked_by = any(cast(:owners as text[]))"
        )

    @property
    def recover(self) -> str:
        """:owners, :delay: give their jobs back and unlock their queues."""
        return (
            f"select {self._s}.recover_dead_worker_jobs(cast(:owners as text[]),"
            " cast(:delay as interval))"
        )

    @property
    def delete_workers(self) -> str:
        """:owners: delete these registry rows."""
        return f"select {self._s}.delete_stale_workers(cast(:owners as text[]))"

    @property
    def notify(self) -> str:
        """:count: wake listening workers (Graphile Worker's ``jobs:insert`` payload)."""
        return (
            "select pg_notify('jobs:insert', json_build_object('r', random(),"
            " 'count', cast(:count as integer))::text)"
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
    """Run one recovery sweep through ``execute``, inside the caller's transaction (which
    must commit for anything to change, and ends the advisory lock).

    Takes the sweep lock without waiting: if another sweeper holds it, returns a result with
    ``swept=False``. Otherwise finds the dead workers (and, under ``recover_unregistered``,
    the orphan owners), reads the jobs they hold, and unless ``dry_run`` gives those jobs
    back, unlocks their queues, deletes the dead workers' rows and, when jobs were given
    back with no delay, sends ``jobs:insert`` so that idle workers fetch them at once.
    Database errors propagate.
    """
    sql = recovery_statements(schema)
    (locked,) = (await execute(sql.try_lock, {}))[0]
    if not locked:
        return SweepResult(swept=False, dry_run=dry_run)
    threshold = timedelta(seconds=settings.threshold)
    dead_rows = await execute(
        sql.dead_workers,
        {
            "threshold": threshold,
            "flags": list(settings.resilient_flags),
            "multiplier": float(settings.resilient_multiplier),
        },
    )
    dead = tuple(row[0] for row in dead_rows)
    orphans: tuple[str, ...] = ()
    if settings.recover_unregistered:
        orphans = tuple(row[0] for row in await execute(sql.orphans, {"threshold": threshold}))
    owners = [*dead, *orphans]
    if not owners:
        return SweepResult(swept=True, dry_run=dry_run)
    jobs = tuple(
        RecoveredJob(
            id=row[0], task_identifier=row[1], queue_name=row[2], attempts=row[3], locked_by=row[4]
        )
        for row in await execute(sql.held_jobs, {"owners": owners})
    )
    (queues,) = (await execute(sql.held_queues, {"owners": owners}))[0]
    if not dry_run:
        delay = timedelta(seconds=settings.recovery_delay)
        await execute(sql.recover, {"owners": owners, "delay": delay})
        if dead:
            await execute(sql.delete_workers, {"owners": list(dead)})
        if jobs and settings.recovery_delay == 0:
            await execute(sql.notify, {"count": len(jobs)})
    per_worker = {owner: 0 for owner in owners}
    for job in jobs:
        per_worker[job.locked_by] += 1
    return SweepResult(
        swept=True,
        dry_run=dry_run,
        dead_workers=dead,
        orphans=orphans,
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
