"""Connection settings for a pooler in front of PostgreSQL (see docs/poolers.md).

A pooler in transaction mode (PgBouncer's ``pool_mode = transaction``, most managed poolers)
hands each transaction to whichever server connection is free, so nothing may outlive a
transaction on the server: not a named prepared statement, not a session setting, not a
LISTEN. ``pooler="transaction"`` (on ``Worker``, ``WorkerUtils`` and ``run --pooler``) makes
our connections prepare only unnamed statements, which asyncpg sends again with every
execution when its statement cache is off, so each statement is complete on one server
connection. Imports neither SQLAlchemy nor anything but the standard library.
"""

from __future__ import annotations

from typing import Any, Literal

from .errors import ConfigurationError

#: What ``pooler=`` accepts besides ``None`` (a direct connection, or a pooler in session
#: mode: nothing to change).
Pooler = Literal["transaction"]
POOLERS: tuple[Pooler, ...] = ("transaction",)


def check_pooler(value: object) -> Pooler | None:
    """``value`` if it is ``None`` or ``"transaction"``; else :class:`ConfigurationError`."""
    if value is None or value in POOLERS:
        return value
    raise ConfigurationError(f"pooler must be None or 'transaction', not {value!r}")


def _unnamed() -> str:
    return ""


def asyncpg_engine_connect_args(pooler: Pooler | None) -> dict[str, Any]:
    """``connect_args`` for a SQLAlchemy asyncpg engine behind ``pooler``: for
    ``"transaction"``, no statement cache in asyncpg nor in SQLAlchemy, and unnamed
    prepared statements (docs/poolers.md gives the same to users); else none."""
    if pooler is None:
        return {}
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unnamed,
    }
