"""The statements that read the queue's health: the queue-level metrics and the doctor's
checks.

Every statement is built from constants and a validated, quoted schema name, takes its
values as bound parameters (``$1``, ...; none of them take more than a few), only reads,
and never depends on the order of rows a schema function returns.
"""

from __future__ import annotations

from ._identifiers import quote_identifier

#: The job states of the queue-level metrics (the command line's ``list --state``).
JOB_STATES = ("ready", "scheduled", "locked", "failed")

_STATE_FILTERS = {
    "ready": "j.locked_at is null and j.attempts < j.max_attempts and j.run_at <= now()",
    "scheduled": "j.locked_at is null and j.attempts < j.max_attempts and j.run_at > now()",
    "locked": "j.locked_at is not null",
    "failed": "j.locked_at is null and j.attempts >= j.max_attempts",
}


def queue_counts_sql(schema: str, *, by_queue: bool) -> str:
    """One row per task identifier (and named queue, when ``by_queue``) that has jobs:
    ``(task, queue, ready, scheduled, locked, failed, oldest_ready_seconds)``. ``queue`` is
    ``NULL`` for jobs outside named queues, and always when not ``by_queue``;
    ``oldest_ready_seconds`` is how long the longest-waiting ready job has been due
    (``NULL`` when none is ready). One scan of the jobs table, no locks taken."""
    s = quote_identifier(schema)
    counts = ",\n  ".join(
        f"count(*) filter (where {_STATE_FILTERS[state]}) as {state}" for state in JOB_STATES
    )
    queue = "q.queue_name" if by_queue else "null::text"
    join = f"\nleft join {s}._private_job_queues q on q.id = j.job_queue_id" if by_queue else ""
    group = "t.identifier, q.queue_name" if by_queue else "t.identifier"
    return (
        f"select t.identifier as task, {queue} as queue,\n  {counts},\n"
        "  extract(epoch from now() - min(j.run_at) filter"
        f" (where {_STATE_FILTERS['ready']}))::float8 as oldest_ready_seconds\n"
        f"from {s}._private_jobs j\njoin {s}._private_tasks t on t.id = j.task_id{join}\n"
        f"group by {group}"
    )
