"""The recovery store: the database operations of crash recovery (revision 20).

The worker's :class:`~sqlalchemy_graphile.worker._recovery.Heartbeat` and
:class:`~sqlalchemy_graphile.worker._recovery.RecoverySweeper` get one, as do
:meth:`WorkerUtils.sweep_stale_workers` and ``list_workers``; none of them writes SQL.

Implementations, which differ only in how they run a statement
(:class:`StatementRecoveryStore` holds what each operation runs and reads):

* :class:`~sqlalchemy_graphile._store._asyncpg_recovery.AsyncpgRecoveryStore`: on the
  worker's asyncpg pool, each call a transaction of its own;
* :class:`~sqlalchemy_graphile._store._sqlalchemy_recovery.SqlAlchemyRecoveryStore`: on a
  SQLAlchemy connection, joining its transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Protocol

from .._catalog import Catalog
from .._catalog._columns import QUEUE_NAME, TASK_IDENTIFIER, job_from_row
from .._catalog._statement import Call
from .._catalog._worker import id_list
from .._recovery import (
    RegisteredWorker,
    SweepResult,
    SweepSettings,
    registered_worker,
    sweep_result,
    sweep_values,
)
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


class StatementRecoveryStore(ABC):
    """A :class:`RecoveryStore` on the catalog's recovery statements; a subclass says how
    a statement runs on its driver (:meth:`_rows`)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._statements = catalog.recovery

    @abstractmethod
    async def _rows(self, call: Call) -> Sequence[tuple[Any, ...]]:
        """Run ``call``; its rows, as tuples."""

    async def _value(self, call: Call) -> Any:
        rows = await self._rows(call)
        return rows[0][0] if rows else None

    async def available(self) -> bool:
        return bool(await self._value((self._statements.available, {})))

    async def heartbeat(self, worker_id: str, metadata: str | None = None) -> None:
        values = {"worker_id": worker_id, "metadata": metadata}
        await self._rows((self._statements.heartbeat, values))

    async def deregister(self, worker_id: str) -> None:
        await self._rows((self._statements.deregister, {"worker_id": worker_id}))

    async def sweep(self, settings: SweepSettings, *, dry_run: bool = False) -> SweepResult:
        values = sweep_values(settings, dry_run=dry_run)
        (row,) = await self._rows((self._statements.sweep, values))
        return sweep_result(row, dry_run=dry_run)

    async def next_stale(self, threshold: float, worker_id: str) -> float | None:
        values = {"threshold": timedelta(seconds=threshold), "worker_id": worker_id}
        seconds = await self._value((self._statements.next_stale, values))
        return None if seconds is None else float(seconds)

    async def list_workers(self) -> list[RegisteredWorker]:
        rows = await self._rows((self._statements.list_workers, {}))
        return [registered_worker(row) for row in rows]

    async def jobs(self, job_ids: Sequence[int]) -> list[Job]:
        call = (self._catalog.worker.jobs_by_id, {"job_ids": id_list(job_ids)})
        return [
            job_from_row(row, row[TASK_IDENTIFIER], row[QUEUE_NAME])
            for row in await self._rows(call)
        ]
