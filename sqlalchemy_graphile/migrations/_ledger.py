"""The ``migrations`` ledger: how it is read and what a worker makes of it.

This module imports neither SQLAlchemy nor Alembic, so that the worker's start-up check
(on asyncpg) and :func:`~sqlalchemy_graphile.migrations.read_ledger` (on a SQLAlchemy
``Connection``) share one pair of statements and one decision function without a worker
paying for SQLAlchemy's import. The statements take no parameters: the schema name is
validated and quoted into them, so any driver runs them as they are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from .._identifiers import quote_identifier
from .._schema_missing import not_installed
from ..errors import SchemaTooNewError, SchemaTooOldError
from ._ddl import SCHEMA_REVISION
from ._recovery_ddl import RECOVERY_REVISION

logger = logging.getLogger("sqlalchemy_graphile.migrations")


class Row(Protocol):
    """A result row read by position: a SQLAlchemy ``Row`` or an asyncpg ``Record``."""

    def __getitem__(self, index: int, /) -> Any: ...


@dataclass(frozen=True)
class LedgerState:
    """What the ``migrations`` ledger of a schema says."""

    exists: bool
    has_breaking_column: bool = False
    latest: int | None = None
    latest_breaking: int | None = None


def probe_sql(schema: str) -> str:
    """The statement that tells whether the ledger of ``schema`` exists and has the
    ``breaking`` column: one row ``(has_ledger, has_breaking)``. Raises
    :class:`InvalidIdentifierError` for an unsafe schema name."""
    ledger = _literal(f"{quote_identifier(schema)}.migrations")
    return (
        f"select to_regclass({ledger}) is not null as has_ledger,"
        f" exists(select 1 from pg_attribute where attrelid = to_regclass({ledger})"
        " and attname = 'breaking' and not attisdropped) as has_breaking"
    )


def latest_sql(schema: str, probe: Row) -> str | None:
    """The statement to run after :func:`probe_sql` returned the row ``probe``: one row
    ``(latest, latest_breaking)``, or ``(latest,)`` for a ledger from before the
    ``breaking`` column (Graphile Worker older than 0.16). ``None`` when there is no ledger."""
    has_ledger, has_breaking = probe[0], probe[1]
    if not has_ledger:
        return None
    ledger = f"{quote_identifier(schema)}.migrations"
    if not has_breaking:
        return f"select max(id) from {ledger}"
    return f"select max(id), max(id) filter (where breaking) from {ledger}"


def ledger_state(probe: Row, latest: Row | None) -> LedgerState:
    """The :class:`LedgerState` from the row of :func:`probe_sql` and the row of
    :func:`latest_sql` (``None`` when that had no statement to run)."""
    if not probe[0] or latest is None:
        return LedgerState(exists=False)
    if not probe[1]:
        return LedgerState(exists=True, latest=latest[0])
    return LedgerState(True, True, latest[0], latest[1])


def check_compatible(state: LedgerState, schema: str) -> None:
    """Raise unless a worker of this version can run on a schema in ``state``.

    Revision 19 is the minimum; 20 (the worker-recovery objects, not breaking) is known.
    Raises :class:`SchemaNotInstalledError`, :class:`SchemaTooOldError` or
    :class:`SchemaTooNewError` (any breaking revision above 19); logs a warning for a
    revision above 20 that is not breaking. Runs no SQL.
    """
    supported = SCHEMA_REVISION
    if not state.exists or state.latest is None:
        raise not_installed(schema)
    if state.latest_breaking is not None and state.latest_breaking > supported:
        raise SchemaTooNewError(
            f"database schema {schema!r} is at revision {state.latest}, which includes "
            f"breaking migration {state.latest_breaking}; this version of sqlalchemy-graphile "
            f"supports revisions up to {supported}. Upgrade sqlalchemy-graphile.",
            latest_breaking=state.latest_breaking,
            supported=supported,
        )
    if not state.has_breaking_column or state.latest < supported:
        raise SchemaTooOldError(
            f"database schema {schema!r} is at Graphile Worker revision {state.latest}, older "
            f"than {supported}. Bring it to revision {supported} with Graphile Worker 0.17 "
            "(`npx graphile-worker@0.17 --schema-only`), then run the migration again."
        )
    if state.latest > RECOVERY_REVISION:
        logger.warning(
            "database schema %r is at revision %s, newer than %s; it is not marked as "
            "breaking, so this worker carries on",
            schema,
            state.latest,
            RECOVERY_REVISION,
        )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
