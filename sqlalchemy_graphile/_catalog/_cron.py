"""The statements of the cron scheduler: which items ``_private_known_crontabs`` knows,
recording new ones, and adding a minute's jobs.

The statement that adds jobs upserts ``_private_known_crontabs`` and calls ``add_job`` in
one statement: a minute's ``last_execution`` moves forward only once, so however many
workers (with whatever clocks) schedule the same item and minute, only one of them adds its
job.
"""

from __future__ import annotations

from functools import cached_property

from .._identifiers import SchemaName
from ._statement import Statement


class CronStatements:
    """The cron scheduler's statements for one schema."""

    def __init__(self, schema: SchemaName) -> None:
        self.schema = schema
        self._s = schema.quoted

    @cached_property
    def known(self) -> Statement:
        """``identifiers`` -> (identifier, known_since, last_execution) of those known."""
        return Statement(
            "select known.identifier, known.known_since, known.last_execution"
            f" from {self._s}._private_known_crontabs as known"
            " where known.identifier = any(cast(:identifiers as text[]))",
            {"identifiers": "text[]"},
        )

    @cached_property
    def remember(self) -> Statement:
        """Record ``identifiers`` as known since ``known_since``, never executed (so never
        backfilled); those already known are left as they are."""
        return Statement(
            f"insert into {self._s}._private_known_crontabs as known"
            " (identifier, known_since, last_execution)"
            " select new.identifier, cast(:known_since as timestamptz), null"
            " from unnest(cast(:identifiers as text[])) as new (identifier)"
            " on conflict (identifier) do nothing",
            {"identifiers": "text[]", "known_since": "timestamptz"},
        )

    @cached_property
    def schedule(self) -> Statement:
        """``specs``, a JSON array of ``{identifier, task, payload, queue_name,
        max_attempts, job_key, job_key_mode, priority}``, and the minute ``tick``: for each
        item whose ``last_execution`` is null or earlier than ``tick``, set it to ``tick``
        and add its job with ``run_at`` = ``tick``, in array order. Returns the ids of the
        jobs added, one row each."""
        s = self._s
        return Statement(
            "with specs as ("
            " select entries.index,"
            " entries.spec->>'identifier' as identifier,"
            " entries.spec->>'task' as task,"
            " entries.spec->'payload' as payload,"
            " entries.spec->>'queue_name' as queue_name,"
            " cast(entries.spec->>'max_attempts' as smallint) as max_attempts,"
            " entries.spec->>'job_key' as job_key,"
            " entries.spec->>'job_key_mode' as job_key_mode,"
            " cast(entries.spec->>'priority' as smallint) as priority"
            " from json_array_elements(cast(:specs as json))"
            " with ordinality as entries (spec, index)"
            "), known as ("
            f" insert into {s}._private_known_crontabs as known"
            " (identifier, known_since, last_execution)"
            " select specs.identifier, cast(:tick as timestamptz), cast(:tick as timestamptz)"
            " from specs"
            " on conflict (identifier) do update set last_execution = excluded.last_execution"
            " where known.last_execution is null"
            " or known.last_execution < excluded.last_execution"
            " returning known.identifier"
            ")"
            f" select ({s}.add_job("
            " specs.task, specs.payload, specs.queue_name, cast(:tick as timestamptz),"
            " specs.max_attempts, specs.job_key, specs.priority, null, specs.job_key_mode"
            ")).id"
            " from specs inner join known on known.identifier = specs.identifier"
            " order by specs.index",
            {"specs": "json", "tick": "timestamptz"},
        )
