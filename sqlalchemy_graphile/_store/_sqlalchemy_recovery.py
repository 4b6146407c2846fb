"""The recovery store on a SQLAlchemy connection, for :class:`WorkerUtils` and the
command line: every call joins the connection's transaction (the caller commits)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from .._catalog import Catalog, Statement
from .._catalog._columns import QUEUE_NAME, TASK_IDENTIFIER, job_from_row
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


class SqlAlchemyRecoveryStore:
    """A :class:`~sqlalchemy_graphile._store._recovery.RecoveryStore` on ``connection`` for
    the schema of ``catalog``. Database errors propagate as SQLAlchemy raises them."""

    def __init__(self, connection: AsyncConnection, catalog: Catalog) -> None:
        self._connection = connection
        self._catalog = catalog
        self._statements = catalog.recovery

    async def _rows(self, statement: Statement, **values: Any) -> Sequence[Row[Any]]:
        result = await self._connection.execute(statement.clause, values)
        return result.all()

    async def available(self) -> bool:
        return bool((await self._connection.execute(self._statements.available.clause)).scalar())

    async def heartbeat(self, worker_id: str, metadata: str | None = None) -> None:
        await self._rows(self._statements.heartbeat, worker_id=worker_id, metadata=metadata)

    async def deregister(self, worker_id: str) -> None:
        await self._rows(self._statements.deregister, worker_id=worker_id)

    async def sweep(self, settings: SweepSettings, *, dry_run: bool = False) -> SweepResult:
        (row,) = await self._rows(self._statements.sweep, **sweep_values(settings, dry_run=dry_run))
        return sweep_result(tuple(row), dry_run=dry_run)

    async def next_stale(self, threshold: float, worker_id: str) -> float | None:
        (row,) = await self._rows(
            self._statements.next_stale,
            threshold=timedelta(seconds=threshold),
            worker_id=worker_id,
        )
        return None if row[0] is None else float(row[0])

    async def list_workers(self) -> list[RegisteredWorker]:
        return [registered_worker(row) for row in await self._rows(self._statements.list_workers)]

    async def jobs(self, job_ids: Sequence[int]) -> list[Job]:
        rows = await self._rows(self._catalog.worker.jobs_by_id, job_ids=id_list(job_ids))
        return [job_from_row(row, row[TASK_IDENTIFIER], row[QUEUE_NAME]) for row in rows]
