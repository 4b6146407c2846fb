"""The statements of the cron scheduler, built from constants and the quoted schema name.

The one that adds jobs upserts ``_private_known_crontabs`` and calls ``add_job`` in a single
statement: a minute's ``last_execution`` moves forward only once, so however many workers
(with whatever clocks) schedule the same item and minute, only one of them adds its job.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._identifiers import quote_identifier


@dataclass(frozen=True)
class CronStatements:
    """The statements for one schema."""

    schema: str

    @property
    def _s(self) -> str:
        return quote_identifier(self.schema)

    @property
    def select_known(self) -> str:
        """$1 identifiers -> (identifier, known_since, last_execution) of those known."""
        return (
            "select known.identifier, known.known_since, known.last_execution"
            f" from {self._s}._private_known_crontabs as known"
            " where known.identifier = any($1::text[])"
        )

    @property
    def insert_known(self) -> str:
        """$1 identifiers, $2 known since: record new items (never backfilled)."""
        return (
            f"insert into {self._s}._private_known_crontabs as known"
            " (identifier, known_since, last_execution)"
            " select identifier, $2::timestamptz, null"
            " from unnest($1::text[]) as new (identifier)"
            " on conflict (identifier) do nothing"
        )

    @property
    def schedule(self) -> str:
        """$1 JSON array of ``{identifier, task, payload, queue_name, max_attempts,
        job_key, job_key_mode, priority}``, $2 the minute: for each item whose
        ``last_execution`` is null or earlier than $2, set it to $2 and add its job with
        ``run_at`` $2, in array order. Returns the ids of the jobs added."""
        return (
            "with specs as ("
            " select entries.index,"
            " entries.spec->>'identifier' as identifier,"
            " entries.spec->>'task' as task,"
            " entries.spec->'payload' as payload,"
            " entries.spec->>'queue_name' as queue_name,"
            " (entries.spec->>'max_attempts')::smallint as max_attempts,"
            " entries.spec->>'job_key' as job_key,"
            " entries.spec->>'job_key_mode' as job_key_mode,"
            " (entries.spec->>'priority')::smallint as priority"
            " from json_array_elements($1::json) with ordinality as entries (spec, index)"
            "), known as ("
            f" insert into {self._s}._private_known_crontabs as known"
            " (identifier, known_since, last_execution)"
            " select specs.identifier, $2::timestamptz, $2::timestamptz from specs"
            " on conflict (identifier) do update set last_execution = excluded.last_execution"
            " where known.last_execution is null"
            " or known.last_execution < excluded.last_execution"
            " returning known.identifier"
            ")"
            f" select ({self._s}.add_job("
            " specs.task, specs.payload, specs.queue_name, $2::timestamptz,"
            " specs.max_attempts, specs.job_key, specs.priority, null, specs.job_key_mode"
            ")).id"
            " from specs inner join known on known.identifier = specs.identifier"
            " order by specs.index"
        )
