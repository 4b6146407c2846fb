"""The recovery store on an asyncpg pool, for the worker's heartbeat and sweeper.

Every call runs on a connection of the pool as a transaction of its own (one statement,
committed when the call returns).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from .._catalog import Catalog
from .._catalog._statement import Call
from ._recovery import StatementRecoveryStore


class AsyncpgRecoveryStore(StatementRecoveryStore):
    """A :class:`~sqlalchemy_graphile._store._recovery.RecoveryStore` on ``pool`` for the
    schema of ``catalog``. Database errors propagate as asyncpg raises them."""

    def __init__(self, pool: asyncpg.Pool, catalog: Catalog) -> None:
        super().__init__(catalog)
        self._pool = pool

    async def _rows(self, call: Call) -> Sequence[tuple[Any, ...]]:
        statement, values = call
        rows = await self._pool.fetch(statement.numbered, *statement.arguments(values))
        return [tuple(row) for row in rows]
