"""The start-up schema check, on the worker's own asyncpg pool.

It reads the ``migrations`` ledger as :func:`sqlalchemy_graphile.migrations.read_ledger`
does and judges it with the same :func:`~sqlalchemy_graphile.migrations.check_compatible`,
without an SQLAlchemy engine: a worker then starts without importing SQLAlchemy's asyncio
extension and ORM, and without a connection of its own for the check.
"""

from __future__ import annotations

import asyncpg

from .._identifiers import quote_identifier
from ..migrations import LedgerState, check_compatible
from ._retry import with_retries

_PROBE = (
    "select to_regclass($1) is not null as has_ledger,"
    " exists(select 1 from pg_attribute where attrelid = to_regclass($1)"
    " and attname = 'breaking' and not attisdropped) as has_breaking"
)


async def check_schema(pool: asyncpg.Pool, schema: str) -> None:
    """Raise :class:`SchemaNotInstalledError`, :class:`SchemaTooOldError` or
    :class:`SchemaTooNewError` unless this worker can run on ``schema`` (statements retried
    per :func:`with_retries`; database errors propagate)."""
    state = await with_retries(lambda: _read_ledger(pool, schema))
    check_compatible(state, schema)


async def _read_ledger(pool: asyncpg.Pool, schema: str) -> LedgerState:
    ledger = f"{quote_identifier(schema)}.migrations"
    async with pool.acquire() as connection:
        probe = await connection.fetchrow(_PROBE, ledger)
        assert probe is not None
        if not probe["has_ledger"]:
            return LedgerState(exists=False)
        if not probe["has_breaking"]:
            latest = await connection.fetchval(f"select max(id) from {ledger}")
            return LedgerState(exists=True, latest=latest)
        row = await connection.fetchrow(
            f"select max(id), max(id) filter (where breaking) from {ledger}"
        )
        assert row is not None
        return LedgerState(True, True, row[0], row[1])
