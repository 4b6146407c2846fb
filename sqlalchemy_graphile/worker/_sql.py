"""Every statement the worker runs on its hot path, built from constants and the quoted
schema name, never from user strings.

The statements follow Graphile Worker's lock protocol so that Node, Rust and Python workers
can share one schema: a job and its named queue are locked with ``locked_by`` = the pool id,
and every statement that releases a lock checks that owner first. Parameters are numbered
for asyncpg; asyncpg prepares each text once per connection and reuses it.

Lists of ids and flags travel as one comma-separated text (:func:`id_list`,
:func:`flag_list`) that the statement splits: asyncpg would otherwise look up the
``int[]`` / ``bigint[]`` / ``boolean[]`` types with an extra query on every new connection,
and one text is cheaper to encode than an array.

Completion is guarded by the owner too (Graphile Worker deletes unqueued jobs by id alone):
a worker whose lock was swept away must not delete a job another worker now runs. The
statements that record outcomes return the ids they recorded as one comma-separated text
(``NULL`` for none; :func:`recorded_ids`), so that the worker can tell which jobs were fenced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, cached_property

from .._identifiers import quote_identifier

#: The fixed lock timeout of the schema: older locks are cleared by the sweep.
LOCK_TIMEOUT = "interval '4 hours'"

_JOB_COLUMNS = (
    "jobs.id, jobs.job_queue_id, jobs.task_id, jobs.payload::text as payload, jobs.priority,"
    " jobs.run_at, jobs.attempts, jobs.max_attempts, jobs.last_error, jobs.created_at,"
    " jobs.updated_at, jobs.key, jobs.locked_at, jobs.locked_by, jobs.revision,"
    " jobs.flags::text as flags"
)


def id_list(ids: Iterable[int]) -> str:
    """Job or task ids as the statements take them: ``"1,2,3"``."""
    return ",".join(map(str, ids))


def recorded_ids(text: str | None) -> set[int]:
    """The ids an outcome statement returned (its comma-separated text, or ``None``)."""
    return {int(part) for part in text.split(",")} if text else set()


#: The select that ends an outcome statement: the ids of CTE ``j``, comma-separated.
_RECORDED = " select string_agg(j.id::text, ',') from j"


def flag_list(flags: Iterable[bool]) -> str:
    """Booleans as the statements take them: ``"t,f"``."""
    return ",".join("t" if flag else "f" for flag in flags)


def _split(parameter: str, sql_type: str) -> str:
    # A scalar sub-select, so that the list is split once per statement, not once per row
    # (the outer cast makes `any(...)` take it as an array, not as a sub-query).
    return f"(select string_to_array({parameter}::text, ',')::{sql_type}[])::{sql_type}[]"


_BACKOFF = "greatest(now(), jobs.run_at) + exp(least(jobs.attempts, 10)) * interval '1 second'"


def _fail_set(*, message: str, payload: str, permanent: str) -> str:
    """The assignments of a failure: record the message, schedule the retry with backoff,
    unlock, keep or replace the payload, and use up the attempts when permanent."""
    return (
        f"last_error = {message}, run_at = {_BACKOFF}, locked_by = null, locked_at = null,"
        f" payload = coalesce({payload}, jobs.payload),"
        f" attempts = case when {permanent} then jobs.max_attempts else jobs.attempts end"
    )


@dataclass(frozen=True)
class Statements:
    """The statements for one schema. Get them with :func:`statements_for`."""

    schema: str

    @cached_property
    def _s(self) -> str:
        return quote_identifier(self.schema)

    def _unlock_queues(self, owner: str) -> str:
        """An update that unlocks the queues of the jobs in CTE ``j`` held by ``owner``."""
        return (
            f"update {self._s}._private_job_queues as job_queues"
            " set locked_by = null, locked_at = null from j"
            f" where job_queues.id = j.job_queue_id and job_queues.locked_by = {owner}"
        )

    # -- task identifiers ---------------------------------------------------------------

    @cached_property
    def register_tasks(self) -> str:
        """$1 identifiers: make sure each identifier has a row."""
        return (
            f"insert into {self._s}._private_tasks as tasks (identifier)"
            " select unnest($1::text[]) on conflict do nothing"
        )

    @cached_property
    def select_task_ids(self) -> str:
        """$1 identifiers -> (id, identifier) rows."""
        return (
            f"select tasks.id, tasks.identifier from {self._s}._private_tasks as tasks"
            " where tasks.identifier = any($1::text[])"
        )

    # -- fetching -----------------------------------------------------------------------

    def fetch(self, batch_size: int, *, with_flags: bool, app_time: bool) -> str:
        """Select and lock up to ``batch_size`` runnable jobs, lock their named queues, and
        return the jobs with ``queue_name``. Unlike Graphile Worker's batch fetch, a batch
        never holds two jobs of one named queue, so named queues stay serial at any size.

        $1 pool id, $2 task ids (:func:`id_list`), then $3 forbidden flags (text[]) when
        ``with_flags``, then the application's timestamp when ``app_time``.
        """
        return _fetch_text(self.schema, batch_size, with_flags, app_time)

    # -- completing ---------------------------------------------------------------------

    @cached_property
    def complete_jobs(self) -> str:
        """$1 job ids (:func:`id_list`), $2 pool id: delete jobs that are not in a named
        queue; returns the ids deleted (:func:`recorded_ids`)."""
        return (
            f"with j as (delete from {self._s}._private_jobs as jobs"
            f" where jobs.id = any({_split('$1', 'bigint')}) and jobs.locked_by = $2::text"
            " returning jobs.id)"
            f"{_RECORDED}"
        )

    @cached_property
    def complete_queued_jobs(self) -> str:
        """$1 job ids (:func:`id_list`), $2 pool id: delete jobs and unlock their queues if
        this pool holds them; returns the ids deleted (:func:`recorded_ids`)."""
        return (
            f"with j as (delete from {self._s}._private_jobs as jobs"
            f" where jobs.id = any({_split('$1', 'bigint')}) and jobs.locked_by = $2::text"
            " returning jobs.id, jobs.job_queue_id),"
            f" q as ({self._unlock_queues('$2')})"
            f"{_RECORDED}"
        )

    # -- failing ------------------------------------------------------------------------

    @cached_property
    def fail_job(self) -> str:
        """$1 job id, $2 pool id, $3 message, $4 replacement payload (json text or null),
        $5 permanent: record the failure of a job that is not in a named queue and schedule
        its retry, or use up its attempts when permanent; returns the id updated
        (:func:`recorded_ids`; none when the lock was lost)."""
        return (
            f"with j as (update {self._s}._private_jobs as jobs set"
            f" {_fail_set(message='$3::text', payload='$4::json', permanent='$5::boolean')}"
            " where jobs.id = $1::bigint and jobs.locked_by = $2::text returning jobs.id)"
            f"{_RECORDED}"
        )

    @cached_property
    def fail_queued_job(self) -> str:
        """As :attr:`fail_job`, and unlock the job's queue if this pool holds it."""
        return (
            f"with j as (update {self._s}._private_jobs as jobs set"
            f" {_fail_set(message='$3::text', payload='$4::json', permanent='$5::boolean')}"
            " where jobs.id = $1::bigint and jobs.locked_by = $2::text"
            " returning jobs.id, jobs.job_queue_id),"
            f" q as ({self._unlock_queues('$2')})"
            f"{_RECORDED}"
        )

    @cached_property
    def fail_jobs(self) -> str:
        """$1 pool id, $2 job ids (:func:`id_list`), $3 messages (text[]), $4 replacement
        payloads (text[] of json text or null), $5 permanent flags (:func:`flag_list`), all
        aligned: record many failures at once (named queues included); returns the ids
        updated (:func:`recorded_ids`)."""
        return (
            f"with f as (select * from unnest({_split('$2', 'bigint')}, $3::text[], $4::text[],"
            f" {_split('$5', 'boolean')}) as f(id, message, payload, permanent)),"
            f" j as (update {self._s}._private_jobs as jobs set"
            f" {_fail_set(message='f.message', payload='f.payload::json', permanent='f.permanent')}"
            " from f where jobs.id = f.id and jobs.locked_by = $1::text"
            " returning jobs.id, jobs.job_queue_id),"
            f" q as ({self._unlock_queues('$1')})"
            f"{_RECORDED}"
        )

    @cached_property
    def fail_jobs_with_message(self) -> str:
        """$1 job ids (:func:`id_list`), $2 message, $3 pool id: fail the jobs a stopping
        worker still holds, with one message; returns the ids of the jobs updated."""
        return (
            f"with j as (update {self._s}._private_jobs as jobs set"
            f" last_error = $2::text, run_at = {_BACKOFF},"
            " locked_by = null, locked_at = null"
            f" where jobs.id = any({_split('$1', 'bigint')}) and jobs.locked_by = $3::text"
            " returning jobs.id, jobs.job_queue_id),"
            f" q as ({self._unlock_queues('$3')})"
            " select j.id from j"
        )

    # -- returning unstarted jobs -------------------------------------------------------

    @cached_property
    def return_jobs(self) -> str:
        """$1 pool id, $2 job ids (:func:`id_list`): give back jobs that were fetched but
        never started (their attempt is refunded, ``run_at`` and ``last_error`` kept) and
        unlock their queues; returns the number of jobs returned."""
        return (
            f"with j as (update {self._s}._private_jobs as jobs set"
            " attempts = greatest(0, jobs.attempts - 1), locked_by = null, locked_at = null"
            f" where jobs.id = any({_split('$2', 'bigint')}) and jobs.locked_by = $1::text"
            " returning jobs.job_queue_id),"
            f" q as ({self._unlock_queues('$1')})"
            " select count(*) from j"
        )

    # -- crash recovery -----------------------------------------------------------------

    @cached_property
    def jobs_by_id(self) -> str:
        """$1 job ids (:func:`id_list`): those jobs as the fetch returns them, with
        ``queue_name`` and the task ``identifier``."""
        return (
            f"select {_JOB_COLUMNS}, job_queues.queue_name, tasks.identifier"
            f" from {self._s}._private_jobs as jobs"
            f" join {self._s}._private_tasks as tasks on tasks.id = jobs.task_id"
            f" left join {self._s}._private_job_queues as job_queues"
            " on job_queues.id = jobs.job_queue_id"
            f" where jobs.id = any({_split('$1', 'bigint')}) order by jobs.id"
        )

    # -- stale locks --------------------------------------------------------------------

    def reset_locked(self, *, app_time: bool) -> str:
        """Clear job and queue locks older than four hours; a cleared job becomes runnable
        at once (its lost attempt still counts). $1 is the application's timestamp when
        ``app_time``."""
        now = "$1::timestamptz" if app_time else "now()"
        return (
            f"with j as (update {self._s}._private_jobs as jobs"
            f" set locked_at = null, locked_by = null, run_at = greatest(jobs.run_at, {now})"
            f" where jobs.locked_at < {now} - {LOCK_TIMEOUT})"
            f" update {self._s}._private_job_queues as job_queues"
            " set locked_at = null, locked_by = null"
            f" where job_queues.locked_at < {now} - {LOCK_TIMEOUT}"
        )


@cache
def statements_for(schema: str) -> Statements:
    """The statements for ``schema`` (validated and quoted)."""
    quote_identifier(schema)
    return Statements(schema)


@cache
def _fetch_text(schema: str, batch_size: int, with_flags: bool, app_time: bool) -> str:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch size must be a positive int, not {batch_size!r}")
    s = quote_identifier(schema)
    now = f"${4 if with_flags else 3}::timestamptz" if app_time else "now()"
    flags = " and (jobs.flags ?| $3::text[]) is not true" if with_flags else ""
    runnable = (
        f"jobs.is_available = true and jobs.run_at <= {now}"
        f" and jobs.task_id = any({_split('$2', 'int')}){flags}"
    )
    order = " order by jobs.priority asc, jobs.run_at asc"
    if batch_size == 1:
        # Graphile Worker's shape: one runnable job, unqueued or in an available queue.
        chosen = (
            "with j as ("
            " select jobs.id, jobs.job_queue_id"
            f" from {s}._private_jobs as jobs"
            f" where {runnable}"
            " and (jobs.job_queue_id is null or jobs.job_queue_id in ("
            f" select job_queues.id from {s}._private_job_queues as job_queues"
            " where job_queues.is_available = true for update skip locked))"
            f"{order} limit 1 for update skip locked),"
        )
    else:
        # A batch: unqueued jobs, plus the first runnable job of each available named
        # queue, so that a queue never has two jobs running at once; then the best
        # `batch_size` of those. Rows locked here but not chosen are let go when the
        # statement ends.
        chosen = (
            "with free_queues as ("
            f" select job_queues.id from {s}._private_job_queues as job_queues"
            " where job_queues.is_available = true for update skip locked),"
            " unqueued as ("
            " select jobs.id, jobs.job_queue_id, jobs.priority, jobs.run_at"
            f" from {s}._private_jobs as jobs"
            f" where {runnable} and jobs.job_queue_id is null"
            f"{order} limit {batch_size} for update skip locked),"
            " heads as ("
            " select head.id, head.job_queue_id, head.priority, head.run_at"
            " from free_queues cross join lateral ("
            " select jobs.id, jobs.job_queue_id, jobs.priority, jobs.run_at"
            f" from {s}._private_jobs as jobs"
            f" where jobs.job_queue_id = free_queues.id and {runnable}"
            f"{order} limit 1 for update skip locked) as head),"
            " j as (select jobs.id, jobs.job_queue_id"
            " from (select * from unqueued union all select * from heads) as jobs"
            f"{order} limit {batch_size}),"
        )
    return (
        f"{chosen}"
        f" q as (update {s}._private_job_queues as job_queues"
        f" set locked_by = $1::text, locked_at = {now}"
        " from j where job_queues.id = j.job_queue_id"
        " returning job_queues.id, job_queues.queue_name)"
        f" update {s}._private_jobs as jobs"
        f" set attempts = jobs.attempts + 1, locked_by = $1::text, locked_at = {now}"
        " from j left join q on q.id = j.job_queue_id"
        " where jobs.id = j.id"
        f" returning {_JOB_COLUMNS}, q.queue_name"
    )
