"""The start-up schema check, on the worker's own asyncpg pool.

It runs the query catalog's ledger statements, as
:func:`sqlalchemy_graphile.migrations.read_ledger` does, and judges the result with the same
:func:`~sqlalchemy_graphile.migrations.check_compatible`, without SQLAlchemy: a worker then
starts without importing it, and without a connection of its own for the check. The doctor
reads the ledger with :func:`read_ledger` too.
"""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .._catalog import catalog_for
from ..migrations import _ledger
from ._retry import with_retries


async def check_schema(pool: asyncpg.Pool, schema: str) -> None:
    """Raise :class:`SchemaNotInstalledError`, :class:`SchemaTooOldError` or
    :class:`SchemaTooNewError` unless this worker can run on ``schema`` (statements retried
    per :func:`with_retries`, outside any transaction; database errors propagate)."""
    state = await with_retries(lambda: _read_ledger(pool, schema))
    _ledger.check_compatible(state, schema)


async def read_ledger(
    connection: asyncpg.Connection | PoolConnectionProxy, schema: str
) -> _ledger.LedgerState:
    """What the ledger of ``schema`` says, read on ``connection`` (outside any transaction
    unless the caller opened one; database errors propagate)."""
    statements = catalog_for(schema).ledger
    probe = await connection.fetchrow(statements.probe.numbered)
    assert probe is not None
    statement = statements.latest_after(probe)
    latest = None if statement is None else await connection.fetchrow(statement.numbered)
    return _ledger.ledger_state(probe, latest)


async def _read_ledger(pool: asyncpg.Pool, schema: str) -> _ledger.LedgerState:
    async with pool.acquire() as connection:
        return await read_ledger(connection, schema)
