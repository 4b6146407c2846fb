"""The start-up schema check, on the worker's own asyncpg pool.

It runs the ledger statements of :func:`sqlalchemy_graphile.migrations.read_ledger` and
judges the result with the same :func:`~sqlalchemy_graphile.migrations.check_compatible`,
without SQLAlchemy: a worker then starts without importing it, and without a connection of
its own for the check.
"""

from __future__ import annotations

import asyncpg

from ..migrations import _ledger
from ._retry import with_retries


async def check_schema(pool: asyncpg.Pool, schema: str) -> None:
    """Raise :class:`SchemaNotInstalledError`, :class:`SchemaTooOldError` or
    :class:`SchemaTooNewError` unless this worker can run on ``schema`` (statements retried
    per :func:`with_retries`, outside any transaction; database errors propagate)."""
    state = await with_retries(lambda: _read_ledger(pool, schema))
    _ledger.check_compatible(state, schema)


async def _read_ledger(pool: asyncpg.Pool, schema: str) -> _ledger.LedgerState:
    async with pool.acquire() as connection:
        probe = await connection.fetchrow(_ledger.probe_sql(schema))
        assert probe is not None
        statement = _ledger.latest_sql(schema, probe)
        latest = None if statement is None else await connection.fetchrow(statement)
        return _ledger.ledger_state(probe, latest)
