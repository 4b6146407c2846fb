"""Adding jobs inside the caller's own SQLAlchemy transaction.

:class:`JobHelpers` wraps a :class:`~sqlalchemy.orm.Session`, :class:`AsyncJobHelpers` an
:class:`~sqlalchemy.ext.asyncio.AsyncSession`. Both run on ``session.connection()``: they
join the transaction the session has open (or the one SQLAlchemy begins on first use),
never commit and never open a transaction of their own. The job therefore becomes visible,
and listening workers are woken (``NOTIFY "jobs:insert"`` is delivered at commit), exactly
when the caller commits; a rollback, also of a savepoint, leaves no job and wakes no one.

Every argument is validated before any SQL is sent; bad input raises one of the errors in
:mod:`sqlalchemy_graphile.errors`. A schema that is not installed raises
:class:`~sqlalchemy_graphile.errors.SchemaNotInstalledError` (recognised from the database's
error, so it costs no extra round trip). Other errors from the database itself (a lost
connection, a serialisation failure under ``REPEATABLE READ`` or ``SERIALIZABLE``) propagate
as SQLAlchemy exceptions. Either way the transaction is left as the driver left it (aborted,
for a database error), for the caller to roll back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, TypeVar, overload

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ._job_input import return_jobs_flag
from ._operations import JobOperations, Operation
from ._plugins import Plugins
from .events import WorkerEvents
from .hooks import WorkerPlugin
from .job import Job
from .job_spec import JobSpec, RawJobSpec
from .tasks import BatchTask, Task

T = TypeVar("T")


class JobHelpers:
    """Add and remove jobs in the transaction of a synchronous ``Session``.

    ``schema`` defaults to ``$GRAPHILE_WORKER_SCHEMA`` or ``graphile_worker``; it is
    validated here (:class:`~sqlalchemy_graphile.errors.InvalidIdentifierError`).
    ``plugins`` are :class:`~sqlalchemy_graphile.WorkerPlugin` instances whose
    ``before_job_schedule`` hooks see every job added (``events``, a
    :class:`WorkerEvents`, receives ``hook:error`` when one raises); anything else raises
    :class:`~sqlalchemy_graphile.errors.ConfigurationError`.

    ::

        with Session(engine) as session, session.begin():
            session.add(User(email=email))
            JobHelpers(session).add_job(SendEmail(to=email), JobSpec(queue_name="mail"))
    """

    __slots__ = ("_operations", "session")

    def __init__(
        self,
        session: Session,
        schema: str | None = None,
        *,
        plugins: Iterable[WorkerPlugin] = (),
        events: WorkerEvents | None = None,
    ) -> None:
        self.session = session
        self._operations = JobOperations(schema, Plugins.of(plugins, events))

    @property
    def schema(self) -> str:
        """The schema holding the job queue."""
        return self._operations.schema

    def _run(self, operation: Operation[T]) -> T:
        return operation(self.session.connection())

    def add_job(self, task: Task, spec: JobSpec | None = None) -> Job:
        """Add one job for ``task`` (its fields are the payload) and return its row.

        Runs in the session's transaction and never commits. With a ``job_key`` the job may
        update an existing one (see :class:`JobKeyMode`). Raises :class:`InvalidTaskError`
        (not a :class:`Task` instance), :class:`InvalidPayloadError` (a payload that cannot
        be stored) or :class:`InvalidJobSpecError` (``spec`` is not a :class:`JobSpec`)
        before any SQL; :class:`GraphileWorkerError` if the key was taken by a job locked
        during each of 50 tries.
        """
        return self._run(self._operations.add_job(task, spec))

    @overload
    def add_jobs(
        self, jobs: Sequence[tuple[Task, JobSpec | None]], *, return_jobs: Literal[True] = True
    ) -> list[Job]: ...
    @overload
    def add_jobs(
        self, jobs: Sequence[tuple[Task, JobSpec | None]], *, return_jobs: Literal[False]
    ) -> list[int]: ...
    @overload
    def add_jobs(
        self, jobs: Sequence[tuple[Task, JobSpec | None]], *, return_jobs: bool
    ) -> list[Job] | list[int]: ...
    def add_jobs(
        self, jobs: Sequence[tuple[Task, JobSpec | None]], *, return_jobs: bool = True
    ) -> list[Job] | list[int]:
        """Add several jobs of one task type in one round trip; one job per pair, at its index.

        Runs in the session's transaction and never commits. Each pair carries its own spec
        (or ``None``). ``result[i]`` is the job ``jobs[i]`` inserted or updated, on any
        adopted schema (ours, Node's, the Rust port's): rows are matched to pairs by key, or
        by their stored values for unkeyed jobs, never by the order the database returned
        them in. Unkeyed pairs that are identical may be matched either way round (their
        jobs differ only in id). A keyed job whose key was taken by a job locked during the
        call is added again in the same transaction, as :meth:`add_job` does.

        ``return_jobs=False`` returns the ids of those jobs instead (``result[i]``: the id
        of the job ``jobs[i]`` inserted, or updated in place when its key was held by a
        pending job; the same matching), without building :class:`Job` objects. Anything
        but ``True`` or ``False`` raises :class:`InvalidJobSpecError`.

        Keyed jobs must share their ``job_key_mode`` and may not use ``UNSAFE_DEDUPE``; a key
        may appear once: else :class:`InvalidJobSpecError`. Tasks of different types raise
        :class:`InvalidTaskError` (use :meth:`add_raw_jobs`); otherwise the errors of
        :meth:`add_job`.
        """
        if return_jobs_flag(return_jobs):
            return self._run(self._operations.add_jobs(jobs))
        return self._run(self._operations.add_job_ids(jobs))

    def copy_jobs(self, jobs: Sequence[tuple[Task, JobSpec | None]]) -> list[int]:
        """Add unkeyed jobs of one task type with ``COPY``; return their ids, ``jobs[i]``'s
        at index ``i``.

        The rows, the notification and the transaction are those of :meth:`add_jobs`: runs
        in the session's transaction and never commits; one ``NOTIFY "jobs:insert"`` is
        delivered at commit. Faster than :meth:`add_jobs` for thousands of jobs, slower for
        a few (three statements instead of one). Needs asyncpg, psycopg 3 or psycopg2
        (else :class:`ConfigurationError`). A spec with a ``job_key`` raises
        :class:`InvalidJobSpecError`; otherwise the rules and errors of :meth:`add_jobs`,
        all before any SQL. A failed ``COPY`` raises SQLAlchemy's ``DBAPIError`` around the
        driver's error, leaving the aborted transaction for the caller to roll back.
        """
        return self._run(self._operations.copy_jobs(jobs))

    def add_raw_job(self, identifier: str, payload: Any = None, spec: JobSpec | None = None) -> Job:
        """Add one job by task identifier and JSON-compatible payload (``None`` means ``{}``).

        Runs in the session's transaction and never commits. A payload with no JSON form
        raises :class:`PayloadNotSerializableError`, one that cannot be stored
        :class:`InvalidPayloadError`, a bad identifier or spec :class:`InvalidJobSpecError`,
        all before any SQL.
        """
        return self._run(self._operations.add_raw_job(identifier, payload, spec))

    @overload
    def add_raw_jobs(
        self, jobs: Sequence[RawJobSpec], *, return_jobs: Literal[True] = True
    ) -> list[Job]: ...
    @overload
    def add_raw_jobs(
        self, jobs: Sequence[RawJobSpec], *, return_jobs: Literal[False]
    ) -> list[int]: ...
    @overload
    def add_raw_jobs(
        self, jobs: Sequence[RawJobSpec], *, return_jobs: bool
    ) -> list[Job] | list[int]: ...
    def add_raw_jobs(
        self, jobs: Sequence[RawJobSpec], *, return_jobs: bool = True
    ) -> list[Job] | list[int]:
        """Add jobs of any task identifiers in one round trip; one job per spec, at its index
        (matched as :meth:`add_jobs` explains; identical specs may be matched either way);
        their ids with ``return_jobs=False``.

        Runs in the session's transaction and never commits. Raises
        :class:`InvalidJobSpecError` for an entry that is not a :class:`RawJobSpec` or a
        breach of the bulk rules of :meth:`add_jobs`, and the payload errors of
        :meth:`add_raw_job`, before any SQL.
        """
        if return_jobs_flag(return_jobs):
            return self._run(self._operations.add_raw_jobs(jobs))
        return self._run(self._operations.add_raw_job_ids(jobs))

    def copy_raw_jobs(self, jobs: Sequence[RawJobSpec]) -> list[int]:
        """Add unkeyed jobs of any task identifiers with ``COPY``; return their ids in
        order. Runs in the session's transaction and never commits; rules and errors as
        :meth:`copy_jobs` and :meth:`add_raw_jobs`."""
        return self._run(self._operations.copy_raw_jobs(jobs))

    def add_batch_job(self, items: Sequence[BatchTask], spec: JobSpec | None = None) -> Job:
        """Add one batch job whose payload is the JSON array of ``items`` (one type).

        Runs in the session's transaction and never commits. With a ``job_key`` whose
        pending job also holds an array, the items are appended to it, so jobs accumulate
        until a worker takes them. Raises :class:`InvalidTaskError` for items that are not
        :class:`BatchTask` instances of one type and :class:`InvalidPayloadError` for no
        items, before any SQL; otherwise the errors of :meth:`add_job`.
        """
        return self._run(self._operations.add_batch_job(items, spec))

    def remove_job(self, job_key: str) -> Job | None:
        """Remove the job with ``job_key``; return it, or ``None`` if no job has the key.

        Runs in the session's transaction and never commits. A job that is running is not
        deleted: it loses its key and will not be retried. A key that is not a ``str`` of
        1..512 characters raises :class:`InvalidJobSpecError` before any SQL.
        """
        return self._run(self._operations.remove_job(job_key))


class AsyncJobHelpers:
    """Add and remove jobs in the transaction of an ``AsyncSession``.

    The same methods and options as :class:`JobHelpers`, as coroutines; they run the same
    code through ``AsyncSession.run_sync`` (the plugins' hooks run before, on the event
    loop). Works with asyncpg and psycopg 3 async engines.

    ::

        async with AsyncSession(engine) as session, session.begin():
            await AsyncJobHelpers(session).add_job(SendEmail(to=email))
    """

    __slots__ = ("_operations", "session")

    def __init__(
        self,
        session: AsyncSession,
        schema: str | None = None,
        *,
        plugins: Iterable[WorkerPlugin] = (),
        events: WorkerEvents | None = None,
    ) -> None:
        self.session = session
        self._operations = JobOperations(schema, Plugins.of(plugins, events))

    @property
    def schema(self) -> str:
        """The schema holding the job queue."""
        return self._operations.schema

    async def _run(self, operation: Operation[T]) -> T:
        return await self.session.run_sync(lambda session: operation(session.connection()))

    async def add_job(self, task: Task, spec: JobSpec | None = None) -> Job:
        """Add one job for ``task`` in the session's transaction (never commits); errors as
        :meth:`JobHelpers.add_job`."""
        return await self._run(self._operations.add_job(task, spec))

    @overload
    async def add_jobs(
        self, jobs: Sequence[tuple[Task, JobSpec | None]], *, return_jobs: Literal[True] = True
    ) -> list[Job]: ...
    @overload
    async def add_jobs(
        self, jobs: Sequence[tuple[Task, JobSpec | None]], *, return_jobs: Literal[False]
    ) -> list[int]: ...
    @overload
    async def add_jobs(
        self, jobs: Sequence[tuple[Task, JobSpec | None]], *, return_jobs: bool
    ) -> list[Job] | list[int]: ...
    async def add_jobs(
        self, jobs: Sequence[tuple[Task, JobSpec | None]], *, return_jobs: bool = True
    ) -> list[Job] | list[int]:
        """Add several jobs of one task type in one round trip, in the session's transaction
        (never commits); ids with ``return_jobs=False``; rules and errors as
        :meth:`JobHelpers.add_jobs`."""
        if return_jobs_flag(return_jobs):
            return await self._run(self._operations.add_jobs(jobs))
        return await self._run(self._operations.add_job_ids(jobs))

    async def copy_jobs(self, jobs: Sequence[tuple[Task, JobSpec | None]]) -> list[int]:
        """Add unkeyed jobs of one task type with ``COPY`` in the session's transaction
        (never commits); return their ids in order; see :meth:`JobHelpers.copy_jobs`."""
        return await self._run(self._operations.copy_jobs(jobs))

    async def add_raw_job(
        self, identifier: str, payload: Any = None, spec: JobSpec | None = None
    ) -> Job:
        """Add one job by identifier and payload in the session's transaction (never
        commits); errors as :meth:`JobHelpers.add_raw_job`."""
        return await self._run(self._operations.add_raw_job(identifier, payload, spec))

    @overload
    async def add_raw_jobs(
        self, jobs: Sequence[RawJobSpec], *, return_jobs: Literal[True] = True
    ) -> list[Job]: ...
    @overload
    async def add_raw_jobs(
        self, jobs: Sequence[RawJobSpec], *, return_jobs: Literal[False]
    ) -> list[int]: ...
    @overload
    async def add_raw_jobs(
        self, jobs: Sequence[RawJobSpec], *, return_jobs: bool
    ) -> list[Job] | list[int]: ...
    async def add_raw_jobs(
        self, jobs: Sequence[RawJobSpec], *, return_jobs: bool = True
    ) -> list[Job] | list[int]:
        """Add jobs of any task identifiers in one round trip, in the session's transaction
        (never commits); ids with ``return_jobs=False``; errors as
        :meth:`JobHelpers.add_raw_jobs`."""
        if return_jobs_flag(return_jobs):
            return await self._run(self._operations.add_raw_jobs(jobs))
        return await self._run(self._operations.add_raw_job_ids(jobs))

    async def copy_raw_jobs(self, jobs: Sequence[RawJobSpec]) -> list[int]:
        """Add unkeyed jobs of any task identifiers with ``COPY`` in the session's
        transaction (never commits); return their ids in order; see
        :meth:`JobHelpers.copy_raw_jobs`."""
        return await self._run(self._operations.copy_raw_jobs(jobs))

    async def add_batch_job(self, items: Sequence[BatchTask], spec: JobSpec | None = None) -> Job:
        """Add one batch job holding ``items`` in the session's transaction (never commits);
        errors as :meth:`JobHelpers.add_batch_job`."""
        return await self._run(self._operations.add_batch_job(items, spec))

    async def remove_job(self, job_key: str) -> Job | None:
        """Remove the job with ``job_key`` in the session's transaction (never commits);
        see :meth:`JobHelpers.remove_job`."""
        return await self._run(self._operations.remove_job(job_key))
