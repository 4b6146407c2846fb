"""The recovery store on an asyncpg pool, for the worker's heartbeat and sweeper.

Every call runs on a connection of the pool as a transaction of its own (one statement,
committed when the call returns).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg

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


class AsyncpgRecoveryStore:
    """A :class:`~sqlalchemy_graphile._store._recovery.RecoveryStore` on ``pool`` for the
    schema of ``catalog``. Database errors propagate as asyncpg raises them."""

    def __init__(self, pool: asyncpg.Pool, catalog: Catalog) -> None:
        self._pool = pool
        self._catalog = catalog
        self._statements = catalog.recovery

    async def _value(self, statement: Statement, **values: Any) -> Any:
        return await self._pool.fetchval(statement.numbered, *statement.arguments(values))

    async def _rows(self, statement: Statement, **values: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._pool.fetch(
            statement.numbered, *statement.arguments(values)
        )
        return rows

    async def available(self) -> bool:
        return bool(await self._value(self._statements.available))

    async def heartbeat(self, worker_id: str, metadata: str | None = None) -> None:
        await self._value(self._statements.heartbeat, worker_id=worker_id, metadata=metadata)

    async def deregister(self, worker_id: str) -> None:
        await self._value(self._statements.deregister, worker_id=worker_id)

    async def sweep(self, settings: SweepSettings, *, dry_run: bool = False) -> SweepResult:
        (row,) = await self._rows(self._statements.sweep, **sweep_values(settings, dry_run=dry_run))
        return sweep_result(tuple(row), dry_run=dry_run)

    async def next_stale(self, threshold: float, worker_id: str) -> float | None:
        seconds = await self._value(
            self._statements.next_stale,
            threshold=timedelta(seconds=threshold),
            worker_id=worker_id,
        )
        return None if seconds is None else float(seconds)

    async def list_workers(self) -> list[RegisteredWorker]:
        rows = await self._rows(self._statements.list_workers)
        return [registered_worker(tuple(row)) for row in rows]

    async def jobs(self, job_ids: Sequence[int]) -> list[Job]:
        rows = await self._rows(self._catalog.worker.jobs_by_id, job_ids=id_list(job_ids))
        return [job_from_row(row, row[TASK_IDENTIFIER], row[QUEUE_NAME]) for row in rows]
