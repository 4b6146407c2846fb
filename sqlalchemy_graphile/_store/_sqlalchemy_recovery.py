"""The recovery store on a SQLAlchemy connection, for :class:`WorkerUtils` and the
command line: every call joins the connection's transaction (the caller commits)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from .._catalog import Catalog
from .._catalog._statement import Call
from ._recovery import StatementRecoveryStore


class SqlAlchemyRecoveryStore(StatementRecoveryStore):
    """A :class:`~sqlalchemy_graphile._store._recovery.RecoveryStore` on ``connection`` for
    the schema of ``catalog``. Database errors propagate as SQLAlchemy raises them."""

    def __init__(self, connection: AsyncConnection, catalog: Catalog) -> None:
        super().__init__(catalog)
        self._connection = connection

    async def _rows(self, call: Call) -> Sequence[tuple[Any, ...]]:
        statement, values = call
        result = await self._connection.execute(statement.clause, values)
        return [tuple(row) for row in result]
