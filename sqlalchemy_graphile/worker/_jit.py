"""The local queue's batch fetch, run with JIT compilation off.

The batch fetch's plan crosses ``jit_above_cost`` (a 500-job fetch's plan costs about
900 000 with 20 000 jobs waiting), and compiling it costs far more than it saves (see
docs/performance.md). A one-job fetch's plan costs about 40 and is run as it is.

The setting is made with ``SET LOCAL`` inside a transaction of the fetch's own, not as a
startup parameter of the connection: poolers refuse startup parameters they do not know
(PgBouncer: ``unsupported startup parameter: jit``), and a session-level setting could
outlive the worker's use of a pooled server connection. The transaction also keeps the
fetch on one server connection in a pooler's transaction mode.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# One round trip: a simple query may hold several statements.
_BEGIN = "begin; set local jit = off"


async def fetch_without_jit(pool: asyncpg.Pool, query: str, *args: Any) -> list[asyncpg.Record]:
    """The rows of ``query``, run in a transaction of its own (committed on return) with
    ``jit`` off, on a connection of ``pool``. Database errors propagate; the transaction is
    rolled back first (or the connection closed when that is not possible)."""
    async with pool.acquire() as connection:
        await connection.execute(_BEGIN)
        try:
            rows: list[asyncpg.Record] = await connection.fetch(query, *args)
            await connection.execute("commit")
        except BaseException as error:
            await _end_transaction(connection, error)
            raise
        return rows


async def _end_transaction(connection: PoolConnectionProxy, error: BaseException) -> None:
    """Leave no transaction open on a connection going back to the pool: roll it back, or
    close the connection when the statement was cancelled (the connection may still be
    busy with it) or the rollback fails."""
    if connection.is_closed():
        return
    if isinstance(error, Exception):
        try:
            await connection.execute("rollback")
            return
        except Exception:  # closed below
            pass
    connection.terminate()
