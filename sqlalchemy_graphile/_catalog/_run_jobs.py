"""The statements ``run_jobs`` runs besides the worker's lock protocol."""

from __future__ import annotations

from functools import cached_property

from .._identifiers import SchemaName
from ._statement import Statement


class RunJobsStatements:
    """What :func:`~sqlalchemy_graphile.testing.run_jobs` reads besides the worker's
    statements, for one schema."""

    def __init__(self, schema: SchemaName) -> None:
        self.schema = schema

    @cached_property
    def latest_run_at(self) -> Statement:
        """The latest ``run_at`` of any job, or the transaction's ``now()`` if that is
        later: the time at which every job is due (``run_scheduled=True``)."""
        return Statement(
            "select greatest(now(), max(jobs.run_at))"
            f" from {self.schema.quoted}._private_jobs as jobs"
        )
