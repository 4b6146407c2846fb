"""The ``migrations`` ledger: what its rows say and what a worker makes of that.

The worker's start-up check and the doctor (on asyncpg) and
:func:`~sqlalchemy_graphile.migrations.read_ledger` (on a SQLAlchemy ``Connection``) run the
query catalog's ledger statements (:mod:`sqlalchemy_graphile._catalog._ledger`) and share
:func:`ledger_state` and :func:`check_compatible`. This module imports neither SQLAlchemy
nor Alembic, so a worker does not pay for their import.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .._catalog._columns import Row
from .._schema_missing import not_installed
from ..errors import SchemaTooNewError, SchemaTooOldError
from ._ddl import SCHEMA_REVISION
from ._recovery_ddl import RECOVERY_REVISION

logger = logging.getLogger("sqlalchemy_graphile.migrations")


@dataclass(frozen=True)
class LedgerState:
    """What the ``migrations`` ledger of a schema says."""

    exists: bool
    has_breaking_column: bool = False
    latest: int | None = None
    latest_breaking: int | None = None


def ledger_state(probe: Row, latest: Row | None) -> LedgerState:
    """The :class:`LedgerState` from the row of the ledger's ``probe`` statement and the
    row of the statement ``latest_after(probe)`` picked (``None`` when it picked none)."""
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
