"""The recovery store: the database operations of crash recovery (revision 20).

The worker's :class:`~sqlalchemy_graphile.worker._recovery.Heartbeat` and
:class:`~sqlalchemy_graphile.worker._recovery.RecoverySweeper` get one, as do
:meth:`WorkerUtils.sweep_stale_workers` and ``list_workers``; none of them writes SQL.

Implementations:

* :class:`~sqlalchemy_graphile._store._asyncpg_recovery.AsyncpgRecoveryStore`: on the
  worker's asyncpg pool, each call a transaction of its own;
* :class:`~sqlalchemy_graphile._store._sqlalchemy_recovery.SqlAlchemyRecoveryStore`: on a
  SQLAlchemy connection, joining its transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .._recovery import RegisteredWorker, SweepResult, SweepSettings
from ..job import Job


class RecoveryStore(Protocol):
    """Crash recovery's operations on one schema. Database errors propagate as the driver
    raises them (on a schema without revision 20, that of the missing function or table,
    except from :meth:`available`)."""

    async def available(self) -> bool:
        """Whether the schema has the revision-20 registry (``_private_workers``)."""

    async def heartbeat(self, worker_id: str, metadata: str | None = None) -> None:
        """Register ``worker_id`` or refresh its heartbeat; ``metadata`` (JSON text)
        replaces what it registered with, when given."""

    async def deregister(self, worker_id: str) -> None:
        """Forget ``worker_id`` (a pool that exits cleanly)."""

    async def sweep(self, settings: SweepSettings, *, dry_run: bool = False) -> SweepResult:
        """One recovery sweep, one statement that changes nothing before it commits.

        Takes the sweep lock without waiting: if another sweeper holds it, returns a result
        with ``swept=False``. Otherwise finds the dead workers (and, under
        ``recover_unregistered``, the orphan owners) and the jobs they hold, and unless
        ``dry_run`` gives those jobs back, unlocks their queues, deletes the dead workers'
        rows and, when jobs were given back with no delay, sends ``jobs:insert`` so that
        idle workers fetch them at once."""

    async def next_stale(self, threshold: float, worker_id: str) -> float | None:
        """Seconds (on the database clock) until the registered worker other than
        ``worker_id`` with the oldest heartbeat is ``threshold`` seconds old; negative if
        one is already, ``None`` if there is none."""

    async def list_workers(self) -> list[RegisteredWorker]:
        """Every registered worker, oldest first, with its heartbeat age and what it
        holds."""

    async def jobs(self, job_ids: Sequence[int]) -> list[Job]:
        """The jobs with ``job_ids`` as stored now, by id (missing ones left out)."""
