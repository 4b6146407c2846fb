"""The statements that read the ``migrations`` ledger of a schema.

The worker's start-up check and the doctor (on asyncpg) and
:func:`~sqlalchemy_graphile.migrations.read_ledger` (on SQLAlchemy) run the same pair:
:attr:`LedgerStatements.probe`, then the statement :meth:`LedgerStatements.latest_after`
picks from its row. Neither takes a parameter; what they make of the rows is
:func:`sqlalchemy_graphile.migrations._ledger.ledger_state`.
"""

from __future__ import annotations

from functools import cached_property

from .._identifiers import SchemaName
from ._columns import Row
from ._statement import Statement


class LedgerStatements:
    """The ledger's statements for one schema."""

    def __init__(self, schema: SchemaName) -> None:
        self.schema = schema
        self._ledger = f"{schema.quoted}.migrations"

    @cached_property
    def probe(self) -> Statement:
        """One row ``(has_ledger, has_breaking)``: whether the ledger exists and has the
        ``breaking`` column."""
        ledger = "'" + self._ledger.replace("'", "''") + "'"
        return Statement(
            f"select to_regclass({ledger}) is not null as has_ledger,"
            f" exists(select 1 from pg_attribute where attrelid = to_regclass({ledger})"
            " and attname = 'breaking' and not attisdropped) as has_breaking"
        )

    @cached_property
    def latest(self) -> Statement:
        """One row ``(latest, latest_breaking)``: the newest revision and the newest
        breaking one."""
        return Statement(f"select max(id), max(id) filter (where breaking) from {self._ledger}")

    @cached_property
    def latest_without_breaking(self) -> Statement:
        """One row ``(latest,)``, for a ledger from before the ``breaking`` column (Graphile
        Worker older than 0.16)."""
        return Statement(f"select max(id) from {self._ledger}")

    def latest_after(self, probe: Row) -> Statement | None:
        """The statement to run after :attr:`probe` returned the row ``probe``; ``None``
        when there is no ledger."""
        has_ledger, has_breaking = probe[0], probe[1]
        if not has_ledger:
            return None
        return self.latest if has_breaking else self.latest_without_breaking
