"""The statements of a worker's lock protocol: register tasks, fetch and lock jobs, record
their outcomes, give unstarted jobs back, clear stale locks.

They follow Graphile Worker's protocol so that Node, Rust and Python workers can share one
schema: a job and its named queue are locked with ``locked_by`` = the pool id, and every
statement that releases a lock checks that owner first. Completion is guarded by the owner
too (Graphile Worker deletes unqueued jobs by id alone): a worker whose lock was swept away
must not delete a job another worker now runs. The statements that record outcomes return
the ids they recorded as one comma-separated text (``NULL`` for none; :func:`recorded_ids`),
so that the worker can tell which jobs were fenced.

Lists of ids and flags travel as one comma-separated text (:func:`id_list`,
:func:`flag_list`) that the statement splits: asyncpg would otherwise look up the
``int[]`` / ``bigint[]`` / ``boolean[]`` types with an extra query on every new connection,
and one text is cheaper to encode than an array.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property, lru_cache

from .._identifiers import SchemaName
from ._columns import JOB_COLUMNS, NAME_COLUMNS, NAME_JOINS
from ._statement import Statement

#: The fixed lock timeout of the schema: older locks are cleared by the sweep.
LOCK_TIMEOUT = "interval '4 hours'"

#: The order jobs are fetched in.
_ORDER = " order by jobs.priority asc, jobs.run_at asc"


def id_list(ids: Iterable[int]) -> str:
    """Job or task ids as the statements take them: ``"1,2,3"``."""
    return ",".join(map(str, ids))


def flag_list(flags: Iterable[bool]) -> str:
    """Booleans as the statements take them: ``"t,f"``."""
    return ",".join("t" if flag else "f" for flag in flags)


def recorded_ids(text: str | None) -> set[int]:
    """The ids an outcome statement returned (its comma-separated text, or ``None``)."""
    return {int(part) for part in text.split(",")} if text else set()


#: The select that ends an outcome statement: the ids of CTE ``j``, comma-separated.
_RECORDED = " select string_agg(j.id::text, ',') from j"

#: Sets ``synchronous_commit = off`` for the statement's own transaction only (see
#: :class:`WorkerStatements`).
_ASYNCHRONOUS_COMMIT = "set_config('synchronous_commit', 'off', true)"

_BACKOFF = "greatest(now(), jobs.run_at) + exp(least(jobs.attempts, 10)) * interval '1 second'"


def _split(parameter: str, sql_type: str) -> str:
    # A scalar sub-select, so that the list is split once per statement, not once per row
    # (the outer cast makes `any(...)` take it as an array, not as a sub-query).
    return (
        f"(select cast(string_to_array(cast({parameter} as text), ',') as {sql_type}[]))"
        f"::{sql_type}[]"
    )


def _fail_set(*, message: str, payload: str, permanent: str) -> str:
    """The assignments of a failure: record the message, schedule the retry with backoff,
    unlock, keep or replace the payload, and use up the attempts when permanent."""
    return (
        f"last_error = {message}, run_at = {_BACKOFF}, locked_by = null, locked_at = null,"
        f" payload = coalesce({payload}, jobs.payload),"
        f" attempts = case when {permanent} then jobs.max_attempts else jobs.attempts end"
    )


#: The assignments of one failure, from ``:message``, ``:payload`` and ``:permanent``.
_FAIL_ONE = _fail_set(
    message="cast(:message as text)",
    payload="cast(:payload as json)",
    permanent="cast(:permanent as boolean)",
)


class WorkerStatements:
    """The lock protocol's statements for one schema (see the module docstring).

    With ``asynchronous_commit`` the statements that record outcomes (complete, fail,
    release-and-fetch) set ``synchronous_commit = off`` for their own transaction: the
    commit does not wait for the WAL flush. A database crash may then lose the last
    outcomes written, and those jobs run once more; nothing else changes.
    """

    def __init__(self, schema: SchemaName, *, asynchronous_commit: bool = False) -> None:
        self.schema = schema
        self.asynchronous_commit = asynchronous_commit
        self._s = schema.quoted
        # `max` is evaluated only when something was recorded, which is all that matters.
        self._recorded = (
            f" select string_agg(j.id::text, ','), max({_ASYNCHRONOUS_COMMIT}) from j"
            if asynchronous_commit
            else _RECORDED
        )

    def _unlock_queues(self) -> str:
        """An update that unlocks the queues of the jobs in CTE ``j`` held by ``:pool_id``."""
        return (
            f"update {self._s}._private_job_queues as job_queues"
            " set locked_by = null, locked_at = null from j"
            " where job_queues.id = j.job_queue_id"
            " and job_queues.locked_by = cast(:pool_id as text)"
        )

    # -- task identifiers ---------------------------------------------------------------

    @cached_property
    def register_tasks(self) -> Statement:
        """Make sure each of ``identifiers`` has a task row."""
        return Statement(
            f"insert into {self._s}._private_tasks as tasks (identifier)"
            " select unnest(cast(:identifiers as text[])) on conflict do nothing",
            {"identifiers": "text[]"},
        )

    @cached_property
    def task_ids(self) -> Statement:
        """``identifiers`` -> (id, identifier) rows of those that have a task row."""
        return Statement(
            f"select tasks.id, tasks.identifier from {self._s}._private_tasks as tasks"
            " where tasks.identifier = any(cast(:identifiers as text[]))",
            {"identifiers": "text[]"},
        )

    # -- fetching -----------------------------------------------------------------------

    def fetch(self, batch_size: int, *, with_flags: bool, app_time: bool) -> Statement:
        """Select and lock up to ``batch_size`` runnable jobs of ``task_ids``
        (:func:`id_list`) for ``pool_id``, lock their named queues, and return the jobs
        (:data:`JOB_COLUMNS`) with ``queue_name``. Unlike Graphile Worker's batch fetch, a
        batch never holds two jobs of one named queue, so named queues stay serial at any
        size. With ``with_flags``, jobs with any of ``forbidden_flags`` are skipped; with
        ``app_time``, ``now`` is the application's time instead of the database's.
        Raises :class:`ValueError` for a batch size that is not a positive int.
        """
        return _fetch(self.schema, batch_size, with_flags, app_time)

    def release_and_fetch(self, *, failed: bool, with_flags: bool, app_time: bool) -> Statement:
        """Release ``job_id`` (complete it, or with ``failed`` record its failure as
        :attr:`fail_job` does) and unlock its queue where ``pool_id`` holds them, and fetch
        the next job as :meth:`fetch` with a batch of one does, in one statement: one
        commit per job. Returns one row: the next job's columns (all null when none was
        runnable), then the ids released (:func:`recorded_ids`; null when fenced)."""
        return _release_and_fetch(
            self.schema, failed, with_flags, app_time, self.asynchronous_commit
        )

    # -- completing ---------------------------------------------------------------------

    @cached_property
    def complete_jobs(self) -> Statement:
        """Delete ``job_ids`` (:func:`id_list`, jobs not in a named queue) locked by
        ``pool_id``; returns the ids deleted (:func:`recorded_ids`)."""
        return Statement(
            f"with j as (delete from {self._s}._private_jobs as jobs"
            f" where jobs.id = any({_split(':job_ids', 'bigint')})"
            " and jobs.locked_by = cast(:pool_id as text) returning jobs.id)"
            f"{self._recorded}",
            {"job_ids": "text", "pool_id": "text"},
        )

    @cached_property
    def complete_queued_jobs(self) -> Statement:
        """As :attr:`complete_jobs`, and unlock the jobs' queues if ``pool_id`` holds them."""
        return Statement(
            f"with j as (delete from {self._s}._private_jobs as jobs"
            f" where jobs.id = any({_split(':job_ids', 'bigint')})"
            " and jobs.locked_by = cast(:pool_id as text)"
            " returning jobs.id, jobs.job_queue_id),"
            f" q as ({self._unlock_queues()})"
            f"{self._recorded}",
            {"job_ids": "text", "pool_id": "text"},
        )

    # -- failing ------------------------------------------------------------------------

    _FAIL_TYPES = {
        "job_id": "bigint",
        "pool_id": "text",
        "message": "text",
        "payload": "text",
        "permanent": "boolean",
    }

    @cached_property
    def fail_job(self) -> Statement:
        """Record the failure of ``job_id`` (not in a named queue, locked by ``pool_id``)
        with ``message`` and schedule its retry, or use up its attempts when ``permanent``;
        ``payload`` (JSON text or null) replaces its payload. Returns the id updated
        (:func:`recorded_ids`; none when the lock was lost)."""
        return Statement(
            f"with j as (update {self._s}._private_jobs as jobs set {_FAIL_ONE}"
            " where jobs.id = cast(:job_id as bigint)"
            " and jobs.locked_by = cast(:pool_id as text) returning jobs.id)"
            f"{self._recorded}",
            self._FAIL_TYPES,
        )

    @cached_property
    def fail_queued_job(self) -> Statement:
        """As :attr:`fail_job`, and unlock the job's queue if ``pool_id`` holds it."""
        return Statement(
            f"with j as (update {self._s}._private_jobs as jobs set {_FAIL_ONE}"
            " where jobs.id = cast(:job_id as bigint)"
            " and jobs.locked_by = cast(:pool_id as text)"
            " returning jobs.id, jobs.job_queue_id),"
            f" q as ({self._unlock_queues()})"
            f"{self._recorded}",
            self._FAIL_TYPES,
        )

    @cached_property
    def fail_jobs(self) -> Statement:
        """Record many failures at once (named queues included): ``job_ids``
        (:func:`id_list`), ``messages`` (text[]), ``payloads`` (text[] of JSON text or
        null) and ``permanents`` (:func:`flag_list`), aligned, for jobs locked by
        ``pool_id``; returns the ids updated (:func:`recorded_ids`)."""
        fail_set = _fail_set(
            message="f.message", payload="cast(f.payload as json)", permanent="f.permanent"
        )
        return Statement(
            f"with f as (select * from unnest({_split(':job_ids', 'bigint')},"
            " cast(:messages as text[]), cast(:payloads as text[]),"
            f" {_split(':permanents', 'boolean')}) as f(id, message, payload, permanent)),"
            f" j as (update {self._s}._private_jobs as jobs set {fail_set}"
            " from f where jobs.id = f.id and jobs.locked_by = cast(:pool_id as text)"
            " returning jobs.id, jobs.job_queue_id),"
            f" q as ({self._unlock_queues()})"
            f"{self._recorded}",
            {
                "job_ids": "text",
                "messages": "text[]",
                "payloads": "text[]",
                "permanents": "text",
                "pool_id": "text",
            },
        )

    @cached_property
    def fail_jobs_with_message(self) -> Statement:
        """Fail ``job_ids`` (:func:`id_list`), which a stopping worker ``pool_id`` still
        holds, with one ``message``; returns the ids of the jobs updated (one row each)."""
        return Statement(
            f"with j as (update {self._s}._private_jobs as jobs set"
            f" last_error = cast(:message as text), run_at = {_BACKOFF},"
            " locked_by = null, locked_at = null"
            f" where jobs.id = any({_split(':job_ids', 'bigint')})"
            " and jobs.locked_by = cast(:pool_id as text)"
            " returning jobs.id, jobs.job_queue_id),"
            f" q as ({self._unlock_queues()})"
            " select j.id from j",
            {"job_ids": "text", "message": "text", "pool_id": "text"},
        )

    # -- returning unstarted jobs -------------------------------------------------------

    @cached_property
    def return_jobs(self) -> Statement:
        """Give back ``job_ids`` (:func:`id_list`) that ``pool_id`` fetched but never
        started (their attempt is refunded, ``run_at`` and ``last_error`` kept) and unlock
        their queues; returns the number of jobs returned."""
        return Statement(
            f"with j as (update {self._s}._private_jobs as jobs set"
            " attempts = greatest(0, jobs.attempts - 1), locked_by = null, locked_at = null"
            f" where jobs.id = any({_split(':job_ids', 'bigint')})"
            " and jobs.locked_by = cast(:pool_id as text)"
            " returning jobs.job_queue_id),"
            f" q as ({self._unlock_queues()})"
            " select count(*) from j",
            {"job_ids": "text", "pool_id": "text"},
        )

    # -- reading jobs back --------------------------------------------------------------

    @cached_property
    def jobs_by_id(self) -> Statement:
        """``job_ids`` (:func:`id_list`): those jobs (:data:`JOB_COLUMNS`, then
        :data:`NAME_COLUMNS`), by id."""
        return Statement(
            f"select {JOB_COLUMNS}, {NAME_COLUMNS} from {self._s}._private_jobs as jobs"
            + NAME_JOINS.format(s=self._s)
            + f" where jobs.id = any({_split(':job_ids', 'bigint')}) order by jobs.id",
            {"job_ids": "text"},
        )

    # -- stale locks --------------------------------------------------------------------

    def reset_locked(self, *, app_time: bool) -> Statement:
        """Clear job and queue locks older than four hours; a cleared job becomes runnable
        at once (its lost attempt still counts). With ``app_time``, ``now`` is the
        application's time."""
        return _reset_locked(self.schema, app_time)


@lru_cache(maxsize=64)
def _reset_locked(schema: SchemaName, app_time: bool) -> Statement:
    s = schema.quoted
    now = "cast(:now as timestamptz)" if app_time else "now()"
    return Statement(
        f"with j as (update {s}._private_jobs as jobs"
        f" set locked_at = null, locked_by = null, run_at = greatest(jobs.run_at, {now})"
        f" where jobs.locked_at < {now} - {LOCK_TIMEOUT})"
        f" update {s}._private_job_queues as job_queues"
        " set locked_at = null, locked_by = null"
        f" where job_queues.locked_at < {now} - {LOCK_TIMEOUT}",
        {"now": "timestamptz"} if app_time else {},
    )


@lru_cache(maxsize=256, typed=True)  # typed: a batch size of True is no 1
def _fetch(schema: SchemaName, batch_size: int, with_flags: bool, app_time: bool) -> Statement:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch size must be a positive int, not {batch_size!r}")
    s = schema.quoted
    now = "cast(:now as timestamptz)" if app_time else "now()"
    runnable = _runnable(s, now, with_flags)
    order = _ORDER
    if batch_size == 1:
        chosen = f"with {_choose_one(s, runnable)}"
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
    return Statement(
        f"{chosen} {_lock_queues(s, now)} {_lock_jobs(s, now)}",
        _fetch_types(with_flags=with_flags, app_time=app_time),
    )


def _fetch_types(*, with_flags: bool, app_time: bool) -> dict[str, str]:
    types = {"pool_id": "text", "task_ids": "text"}
    if with_flags:
        types["forbidden_flags"] = "text[]"
    if app_time:
        types["now"] = "timestamptz"
    return types


def _runnable(s: str, now: str, with_flags: bool) -> str:
    """The condition of a runnable job of ``:task_ids`` (without ``:forbidden_flags``)."""
    flags = (
        " and (jobs.flags ?| cast(:forbidden_flags as text[])) is not true" if with_flags else ""
    )
    return (
        f"jobs.is_available = true and jobs.run_at <= {now}"
        f" and jobs.task_id = any({_split(':task_ids', 'int')}){flags}"
    )


def _choose_one(s: str, runnable: str) -> str:
    """CTE ``j``: the best runnable job, unqueued or in an available named queue (Graphile
    Worker's shape), locked."""
    return (
        "j as ("
        " select jobs.id, jobs.job_queue_id"
        f" from {s}._private_jobs as jobs"
        f" where {runnable}"
        " and (jobs.job_queue_id is null or jobs.job_queue_id in ("
        f" select job_queues.id from {s}._private_job_queues as job_queues"
        " where job_queues.is_available = true for update skip locked))"
        f"{_ORDER} limit 1 for update skip locked),"
    )


def _lock_queues(s: str, now: str) -> str:
    """CTE ``q``: the named queues of the jobs in CTE ``j``, locked."""
    return (
        f"q as (update {s}._private_job_queues as job_queues"
        f" set locked_by = cast(:pool_id as text), locked_at = {now}"
        " from j where job_queues.id = j.job_queue_id"
        " returning job_queues.id, job_queues.queue_name)"
    )


def _lock_jobs(s: str, now: str) -> str:
    """The update that locks the jobs in CTE ``j``, counts their attempt and returns them
    (:data:`JOB_COLUMNS`, then ``queue_name`` from CTE ``q``)."""
    return (
        f"update {s}._private_jobs as jobs"
        f" set attempts = jobs.attempts + 1, locked_by = cast(:pool_id as text),"
        f" locked_at = {now}"
        " from j left join q on q.id = j.job_queue_id"
        " where jobs.id = j.id"
        f" returning {JOB_COLUMNS}, q.queue_name"
    )


@lru_cache(maxsize=256)
def _release_and_fetch(
    schema: SchemaName, failed: bool, with_flags: bool, app_time: bool, asynchronous_commit: bool
) -> Statement:
    s = schema.quoted
    now = "cast(:now as timestamptz)" if app_time else "now()"
    owned = "jobs.id = cast(:job_id as bigint) and jobs.locked_by = cast(:pool_id as text)"
    types = _fetch_types(with_flags=with_flags, app_time=app_time) | {"job_id": "bigint"}
    if failed:
        release = f"update {s}._private_jobs as jobs set {_FAIL_ONE} where {owned}"
        types |= {"message": "text", "payload": "text", "permanent": "boolean"}
    else:
        release = f"delete from {s}._private_jobs as jobs where {owned}"
    # Every part sees the snapshot the statement started with: the released job and its
    # queue still look locked to the fetch, so it takes neither (the queue's next job is
    # fetched by a later statement, as after a release of its own).
    return Statement(
        f"with r as ({release} returning jobs.id, jobs.job_queue_id),"
        f" rq as (update {s}._private_job_queues as job_queues"
        " set locked_by = null, locked_at = null from r"
        " where job_queues.id = r.job_queue_id"
        " and job_queues.locked_by = cast(:pool_id as text)),"
        f" {_choose_one(s, _runnable(s, now, with_flags))}"
        f" {_lock_queues(s, now)}, n as ({_lock_jobs(s, now)}),"
        " recorded as (select string_agg(r.id::text, ',') as ids from r)"
        " select n.*, recorded.ids"
        + (f", {_ASYNCHRONOUS_COMMIT}" if asynchronous_commit else "")
        + " from recorded left join n on true",
        types,
    )
