"""The query catalog: every statement the package runs against a ``graphile_worker``
schema, defined once per schema and rendered for the driver that runs it.

``catalog_for(schema)`` validates the schema name once (:class:`SchemaName`) and returns
the :class:`Catalog` of that schema; its sections group the statements by who runs them.
Each statement is a :class:`Statement`: text with named parameters and their SQL types,
available as asyncpg text (``$n``) and as a SQLAlchemy clause. Rows of jobs are read with
the one column list and mapping in :mod:`._columns`.

Nothing here imports SQLAlchemy or asyncpg, so the worker can use the catalog without
loading SQLAlchemy.
"""

from __future__ import annotations

from functools import cache, cached_property

from .._identifiers import SchemaName, schema_name
from ._cron import CronStatements
from ._dashboard import DashboardStatements
from ._health import HealthStatements
from ._inspect import InspectStatements
from ._jobs import JobStatements
from ._ledger import LedgerStatements
from ._reads import ReadStatements
from ._recovery import RecoveryStatements
from ._statement import Statement
from ._worker import WorkerStatements

__all__ = ["Catalog", "Statement", "catalog_for"]


class Catalog:
    """The statements of one schema, by section."""

    def __init__(self, schema: SchemaName) -> None:
        self.schema = schema

    @cached_property
    def jobs(self) -> JobStatements:
        """Adding and administering jobs: the schema's add, remove, complete, fail,
        reschedule and unlock functions, the cleanup tasks, task and queue names."""
        return JobStatements(self.schema)

    @cached_property
    def worker(self) -> WorkerStatements:
        """The lock protocol: fetch, complete, fail, give back, stale locks."""
        return WorkerStatements(self.schema)

    @cached_property
    def worker_asynchronous_commit(self) -> WorkerStatements:
        """As :attr:`worker`, with outcomes committed without waiting for the WAL flush."""
        return WorkerStatements(self.schema, asynchronous_commit=True)

    @cached_property
    def reads(self) -> ReadStatements:
        """Read-only statements of the testing helpers."""
        return ReadStatements(self.schema)

    @cached_property
    def cron(self) -> CronStatements:
        """The cron scheduler: known items, adding a minute's jobs."""
        return CronStatements(self.schema)

    @cached_property
    def recovery(self) -> RecoveryStatements:
        """Crash recovery: the worker registry, heartbeats, the sweep."""
        return RecoveryStatements(self.schema)

    @cached_property
    def ledger(self) -> LedgerStatements:
        """The ``migrations`` ledger: which revision the schema is at."""
        return LedgerStatements(self.schema)

    @cached_property
    def health(self) -> HealthStatements:
        """Read-only checks: queue counts, the doctor's checks, unhandled jobs."""
        return HealthStatements(self.schema)

    @cached_property
    def dashboard(self) -> DashboardStatements:
        """The dashboard's reads: job lists by filter shape, one job, counts, queues, cron
        items, lock holders and heartbeats."""
        return DashboardStatements(self.schema)

    @cached_property
    def inspect(self) -> InspectStatements:
        """The command line's reads (``list``, ``queues``, ``workers``)."""
        return InspectStatements(self.schema)


@cache
def catalog_for(schema: str) -> Catalog:
    """The catalog of ``schema``; raises :class:`~sqlalchemy_graphile.errors.InvalidIdentifierError`
    when it is not a safe schema name."""
    return Catalog(schema_name(schema))
