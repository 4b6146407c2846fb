"""Crash recovery's values, shared by the worker (asyncpg) and :class:`WorkerUtils`
(SQLAlchemy): how a sweep judges workers dead (:class:`SweepSettings`), what it did
(:class:`SweepResult`), a registered worker (:class:`RegisteredWorker`), and the mapping
of the statements' rows to them.

Worker pools register in ``_private_workers`` (revision 20) and refresh their heartbeat
there; the recovery sweep gives back the jobs of pools whose heartbeat is too old. The
statements are the query catalog's (:mod:`sqlalchemy_graphile._catalog._recovery`); a
:class:`~sqlalchemy_graphile._store._recovery.RecoveryStore` runs them. This module imports
neither SQLAlchemy nor asyncpg.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

#: The flag that marks a job whose worker gets ``resilient_threshold_multiplier`` times
#: the threshold before it counts as dead (the Rust port's default).
DEFAULT_RESILIENT_FLAGS = ("infrastructure_resilient",)


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


def sweep_values(settings: SweepSettings, *, dry_run: bool) -> dict[str, Any]:
    """The values of the sweep statement's parameters for ``settings``."""
    return {
        "threshold": timedelta(seconds=settings.threshold),
        "flags": list(settings.resilient_flags),
        "multiplier": float(settings.resilient_multiplier),
        "unregistered": settings.recover_unregistered,
        "delay": timedelta(seconds=settings.recovery_delay),
        "dry_run": dry_run,
    }


def sweep_result(row: Sequence[Any], *, dry_run: bool) -> SweepResult:
    """The :class:`SweepResult` of the sweep statement's one row."""
    swept, dead_json, jobs_json, queues = row
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


def registered_worker(row: Sequence[Any]) -> RegisteredWorker:
    """The :class:`RegisteredWorker` of a row of the statement that lists workers."""
    return RegisteredWorker(
        id=row[0],
        started_at=row[1],
        last_heartbeat_at=row[2],
        heartbeat_age=float(row[3]),
        metadata=None if row[4] is None else json.loads(row[4]),
        job_ids=tuple(row[5]),
        queues=tuple(row[6]),
    )


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
