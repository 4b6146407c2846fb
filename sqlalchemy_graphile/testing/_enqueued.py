"""Reading the jobs the code under test added: :func:`enqueued_jobs`, :func:`assert_enqueued`
and :func:`assert_not_enqueued`.

Each call is checked first (task type, filters, spec: a bad one raises before any SQL), then
reads every job of the task through the test's own connection (see :mod:`._connections`),
so it sees rows the test's transaction has not committed. A typed call validates payloads
as the worker does; a batch job contributes one entry per item.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection

from .._identifiers import resolve_schema
from ..errors import (
    ConfigurationError,
    InvalidJobSpecError,
    InvalidTaskError,
    PayloadValidationError,
    SchemaNotInstalledError,
)
from ..job import Job
from ..job_spec import JobSpec
from ..tasks import AnyTaskType, BatchTask, Task, check_task_type, is_batch_task
from . import _sql
from ._connections import AsyncTarget, SyncTarget, run_on

P = TypeVar("P", bound=Task | BatchTask)
R = TypeVar("R")

#: At most this many jobs are listed in an assertion's message.
LISTED = 10


@dataclass(frozen=True, slots=True)
class EnqueuedJob(Generic[P]):
    """One job in the queue as a test sees it, or one item of a batch job.

    * ``payload``: the task model validated from the stored payload (an instance of the
      :class:`Task` class asked for, or of the :class:`BatchTask` class for one item of a
      batch job); when asked by identifier, the parsed JSON (a batch job's item, for an
      array payload);
    * ``job``: the stored :class:`~sqlalchemy_graphile.Job` row (``id``, ``queue_name``,
      ``key``, ``run_at``, ``priority``, ``attempts``, ``flags``, ...);
    * ``batch_index``: the item's position in a batch job's payload, else ``None``.
    """

    payload: P
    job: Job
    batch_index: int | None = None

    def __str__(self) -> str:
        where = f"job {self.job.id}"
        if self.batch_index is not None:
            where += f", item {self.batch_index}"
        payload = repr(self.payload)
        if not isinstance(self.payload, BaseModel):
            payload = f"{self.job.task_identifier!r} {payload}"
        details = [payload]
        if self.job.queue_name is not None:
            details.append(f"queue {self.job.queue_name!r}")
        if self.job.key is not None:
            details.append(f"key {self.job.key!r}")
        if self.job.priority:
            details.append(f"priority {self.job.priority}")
        if self.job.flags:
            details.append(f"flags {sorted(self.job.flags)}")
        if self.job.attempts:
            details.append(f"attempts {self.job.attempts}/{self.job.max_attempts}")
        if self.job.run_at != self.job.created_at:
            details.append(f"run_at {self.job.run_at.isoformat()}")
        return f"{where}: {', '.join(details)}"


class _Query:
    """A checked request: which task, which payload fields, which job attributes."""

    __slots__ = ("filters", "identifier", "schema", "spec", "task_type")

    def __init__(
        self,
        helper: str,
        task: AnyTaskType | str | None,
        schema: str | None,
        spec: JobSpec | None,
        filters: Mapping[str, Any],
    ) -> None:
        self.schema = resolve_schema(schema)
        self.task_type: AnyTaskType | None = None
        self.identifier: str | None = None
        if isinstance(task, str):
            if not task:
                raise InvalidTaskError(f"{helper}() needs a task identifier, not ''")
            self.identifier = task
        elif task is not None:
            if not isinstance(task, type):
                raise InvalidTaskError(
                    f"{helper}() takes a Task or BatchTask class or a task identifier, "
                    f"not {type(task).__name__} (to match a whole payload, compare the "
                    "payloads of enqueued_jobs() with it)"
                )
            self.task_type = check_task_type(task)
            self.identifier = self.task_type.task_identifier()
            unknown = [name for name in filters if name not in self.task_type.model_fields]
            if unknown:
                fields = ", ".join(self.task_type.model_fields) or "none"
                raise InvalidTaskError(
                    f"{helper}() filters on {', '.join(map(repr, unknown))}, which "
                    f"{self.task_type.__qualname__} does not have; its fields: {fields}"
                )
        if spec is not None:
            if not isinstance(spec, JobSpec):
                raise InvalidJobSpecError(
                    f"{helper}() takes spec=JobSpec(...), not {type(spec).__name__}"
                )
            if spec.job_key_mode is not None:
                raise InvalidJobSpecError(
                    f"{helper}() cannot match job_key_mode: it is not stored with the job"
                )
        self.spec = spec
        self.filters = dict(filters)

    def read(self, connection: Connection) -> _Reading:
        """Every entry of the task (of every job, without a task), oldest first, and how
        many jobs each task has."""
        if not _sql.schema_installed(connection, self.schema):
            raise SchemaNotInstalledError(
                f"the job queue schema {self.schema!r} is not installed in this database: "
                "install it once per test run (the graphile_worker_database fixture, or "
                "sqlalchemy_graphile.testing.load_schema with pytest-postgresql)"
            )
        entries: list[EnqueuedJob[Any]] = []
        for job in _sql.jobs(connection, self.schema, self.identifier):
            entries.extend(self._entries(job))
        return _Reading(entries, _sql.job_counts(connection, self.schema))

    def found(self, reading: _Reading) -> list[EnqueuedJob[Any]]:
        """The entries that match the filters and the spec."""
        return [entry for entry in reading.entries if self.matches(entry)]

    def matches(self, entry: EnqueuedJob[Any]) -> bool:
        return self._spec_matches(entry.job) and all(
            _field(entry.payload, name) == value for name, value in self.filters.items()
        )

    def _entries(self, job: Job) -> list[EnqueuedJob[Any]]:
        task_type = self.task_type
        if task_type is None:
            payload = json.loads(job.payload_json)
            if isinstance(payload, list):
                return [EnqueuedJob(item, job, index) for index, item in enumerate(payload)]
            return [EnqueuedJob(payload, job)]
        if not is_batch_task(task_type):
            return [EnqueuedJob(_validate(task_type, job.payload_json, job, None), job)]
        items = json.loads(job.payload_json)
        if not isinstance(items, list):
            raise PayloadValidationError(
                f"the payload of job {job.id} is not a JSON array of {task_type.__qualname__} "
                f"items: {job.payload_json[:200]}"
            )
        return [
            EnqueuedJob(_validate(task_type, json.dumps(item), job, index), job, index)
            for index, item in enumerate(items)
        ]

    def _spec_matches(self, job: Job) -> bool:
        spec = self.spec
        if spec is None:
            return True
        wanted: list[tuple[object, object]] = [
            (spec.queue_name, job.queue_name),
            (spec.run_at, job.run_at),
            (spec.max_attempts, job.max_attempts),
            (spec.job_key, job.key),
            (spec.priority, job.priority),
        ]
        if spec.flags is not None and set(spec.flags) != set(job.flags or ()):
            return False
        return all(value == actual for value, actual in wanted if value is not None)

    # -- describing it, for assertion messages --------------------------------------------

    def describe(self, quantity: str, plural: bool) -> str:
        """``at least one 'send_email' job (SendEmail) with to='a', queue_name='mail'``."""
        noun = "job"
        if self.task_type is not None and is_batch_task(self.task_type):
            noun = "batch item"
        noun += "s" if plural else ""
        if self.identifier is not None:
            noun = f"{self.identifier!r} {noun}"
        if self.task_type is not None:
            noun += f" ({self.task_type.__qualname__})"
        conditions = [f"{name}={value!r}" for name, value in self.filters.items()]
        if self.spec is not None:
            fields = self.spec.model_dump(exclude_none=True)
            conditions += [f"{name}={value!r}" for name, value in fields.items()]
        return f"{quantity} {noun}" + (f" with {', '.join(conditions)}" if conditions else "")

    def heading(self) -> str:
        """What a list of every entry read is called in a message."""
        if self.identifier is None:
            return "The jobs in the queue"
        return f"The {self.identifier!r} jobs in the queue"


def _validate(task_type: AnyTaskType, payload_json: str, job: Job, index: int | None) -> Any:
    try:
        return task_type.model_validate_json(payload_json)
    except ValidationError as error:
        where = f"job {job.id}" if index is None else f"item {index} of job {job.id}"
        problems = "; ".join(
            f"{'.'.join(map(str, detail['loc'])) or '(payload)'}: {detail['msg']}"
            for detail in error.errors(include_url=False, include_input=False)
        )
        raise PayloadValidationError(
            f"the payload of {where} does not fit {task_type.__qualname__}: {problems}"
        ) from None


def _field(payload: Any, name: str) -> Any:
    if isinstance(payload, BaseModel):
        return getattr(payload, name)
    if isinstance(payload, dict):
        return payload.get(name, _MISSING)
    return _MISSING


_MISSING = object()


@dataclass(frozen=True, slots=True)
class _Reading:
    entries: list[EnqueuedJob[Any]]
    counts: dict[str, int]


def _report(query: _Query, reading: _Reading, entries: list[EnqueuedJob[Any]], heading: str) -> str:
    """The part of a message that says what the queue holds: ``entries`` under ``heading``,
    then how many jobs the other tasks have."""
    lines = []
    if entries:
        lines.append(f"{heading} ({len(entries)}):")
        lines += [f"  {entry}" for entry in entries[:LISTED]]
        if len(entries) > LISTED:
            lines.append(f"  ... and {len(entries) - LISTED} more")
    elif query.identifier is not None:
        lines.append(f"There is no {query.identifier!r} job.")
    others = {name: n for name, n in reading.counts.items() if name != query.identifier}
    if query.identifier is not None and others:
        described = ", ".join(f"{name!r}: {others[name]}" for name in sorted(others))
        lines.append(f"Other jobs in the queue: {described}.")
    elif not reading.counts:
        lines.append("The queue is empty.")
    return "\n".join(lines)


def _then(
    reading: _Reading | Coroutine[Any, Any, _Reading], conclude: Callable[[_Reading], R]
) -> R | Coroutine[Any, Any, R]:
    """``conclude(reading)``, once the reading is there: now, or in a coroutine."""
    __tracebackhide__ = True
    if isinstance(reading, _Reading):
        return conclude(reading)

    async def concluded() -> R:
        __tracebackhide__ = True
        return conclude(await reading)

    return concluded()


# -- the public functions --------------------------------------------------------------------

Found = list[EnqueuedJob[P]]
AnyFound = list[EnqueuedJob[Any]]


@overload
def enqueued_jobs(
    session: SyncTarget,
    task: type[P],
    /,
    *,
    schema: str | None = ...,
    spec: JobSpec | None = ...,
    **payload_filters: Any,
) -> Found[P]: ...
@overload
def enqueued_jobs(
    session: SyncTarget,
    task: str | None = ...,
    /,
    *,
    schema: str | None = ...,
    spec: JobSpec | None = ...,
    **payload_filters: Any,
) -> AnyFound: ...
@overload
def enqueued_jobs(
    session: AsyncTarget,
    task: type[P],
    /,
    *,
    schema: str | None = ...,
    spec: JobSpec | None = ...,
    **payload_filters: Any,
) -> Coroutine[Any, Any, Found[P]]: ...
@overload
def enqueued_jobs(
    session: AsyncTarget,
    task: str | None = ...,
    /,
    *,
    schema: str | None = ...,
    spec: JobSpec | None = ...,
    **payload_filters: Any,
) -> Coroutine[Any, Any, AnyFound]: ...
def enqueued_jobs(
    session: SyncTarget | AsyncTarget,
    task: Any = None,
    /,
    *,
    schema: str | None = None,
    spec: JobSpec | None = None,
    **payload_filters: Any,
) -> AnyFound | Coroutine[Any, Any, AnyFound]:
    """The jobs in the queue, read through ``session`` (in its open transaction, so
    uncommitted jobs are included), oldest first, as :class:`EnqueuedJob` entries.

    ``task`` is a :class:`Task` or :class:`BatchTask` class (payloads are validated into it,
    one entry per item of a batch job), a task identifier (payloads parsed as JSON; an array
    gives one entry per item) or ``None`` (every job). ``payload_filters`` keep the entries
    whose payload field equals the value (``to="ada@example.com"``); ``spec`` keeps the jobs
    whose queue, run time, key, priority, max attempts and flags equal those the
    :class:`JobSpec` gives. ``schema`` defaults to ``$GRAPHILE_WORKER_SCHEMA`` or
    ``graphile_worker``.

    ``session`` is a ``Session``, ``Connection`` or ``scoped_session``; with an
    ``AsyncSession``, ``AsyncConnection`` or ``async_scoped_session``, await the result.
    Raises, before any SQL: :class:`InvalidTaskError` (not a task class, or a filter on a
    field the task does not have), :class:`InvalidJobSpecError` (a bad ``spec``),
    :class:`ConfigurationError` (``session`` is none of those); then
    :class:`SchemaNotInstalledError` and :class:`PayloadValidationError` (a stored payload
    the task cannot read).
    """
    query = _Query("enqueued_jobs", task, schema, spec, payload_filters)
    return _then(run_on(session, query.read, "enqueued_jobs"), query.found)


@overload
def assert_enqueued(
    session: SyncTarget,
    task: type[P],
    /,
    *,
    count: int | None = ...,
    schema: str | None = ...,
    spec: JobSpec | None = ...,
    **payload_filters: Any,
) -> Found[P]: ...
@overload
def assert_enqueued(
    session: SyncTarget,
    task: str | None = ...,
    /,
    *,
    count: int | None = ...,
    schema: str | None = ...,
    spec: JobSpec | None = ...,
    **payload_filters: Any,
) -> AnyFound: ...
@overload
def assert_enqueued(
    session: AsyncTarget,
    task: type[P],
    /,
    *,
    count: int | None = ...,
    schema: str | None = ...,
    spec: JobSpec | None = ...,
    **payload_filters: Any,
) -> Coroutine[Any, Any, Found[P]]: ...
@overload
def assert_enqueued(
    session: AsyncTarget,
    task: str | None = ...,
    /,
    *,
    count: int | None = ...,
    schema: str | None = ...,
    spec: JobSpec | None = ...,
    **payload_filters: Any,
) -> Coroutine[Any, Any, AnyFound]: ...
def assert_enqueued(
    session: SyncTarget | AsyncTarget,
    task: Any = None,
    /,
    *,
    count: int | None = None,
    schema: str | None = None,
    spec: JobSpec | None = None,
    **payload_filters: Any,
) -> AnyFound | Coroutine[Any, Any, AnyFound]:
    """Assert that the queue holds at least one matching job (exactly ``count`` of them,
    when given) and return the matching entries; arguments as :func:`enqueued_jobs`.

    Raises ``AssertionError`` saying what was expected and listing what the queue holds.
    With an async session or connection, await it.
    """
    __tracebackhide__ = True  # pytest shows the test's line, not these
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise ConfigurationError(f"count must be an int of at least 0, not {count!r}")
    query = _Query("assert_enqueued", task, schema, spec, payload_filters)

    def conclude(reading: _Reading) -> AnyFound:
        __tracebackhide__ = True
        found = query.found(reading)
        if (count is None and found) or len(found) == count:
            return found
        if count is None:
            expected = query.describe("at least one", plural=False)
        else:
            expected = query.describe(f"exactly {count}", plural=count != 1)
        shown, heading = (found, "Matching") if found else (reading.entries, query.heading())
        raise AssertionError(
            f"expected {expected}; found {len(found)}.\n" + _report(query, reading, shown, heading)
        )

    return _then(run_on(session, query.read, "assert_enqueued"), conclude)


@overload
def assert_not_enqueued(
    session: SyncTarget,
    task: AnyTaskType | str | None = ...,
    /,
    *,
    schema: str | None = ...,
    spec: JobSpec | None = ...,
    **payload_filters: Any,
) -> None: ...
@overload
def assert_not_enqueued(
    session: AsyncTarget,
    task: AnyTaskType | str | None = ...,
    /,
    *,
    schema: str | None = ...,
    spec: JobSpec | None = ...,
    **payload_filters: Any,
) -> Coroutine[Any, Any, None]: ...
def assert_not_enqueued(
    session: SyncTarget | AsyncTarget,
    task: Any = None,
    /,
    *,
    schema: str | None = None,
    spec: JobSpec | None = None,
    **payload_filters: Any,
) -> Coroutine[Any, Any, None] | None:
    """Assert that the queue holds no matching job; arguments as :func:`enqueued_jobs`
    (no ``task``: no job at all). Raises ``AssertionError`` listing the jobs that match.
    With an async session or connection, await it."""
    __tracebackhide__ = True  # pytest shows the test's line, not these
    query = _Query("assert_not_enqueued", task, schema, spec, payload_filters)

    def conclude(reading: _Reading) -> None:
        __tracebackhide__ = True
        found = query.found(reading)
        if found:
            raise AssertionError(
                f"expected {query.describe('no', plural=False)}; found {len(found)}.\n"
                + _report(query, reading, found, "Matching")
            )

    return _then(run_on(session, query.read, "assert_not_enqueued"), conclude)


__all__ = ["EnqueuedJob", "assert_enqueued", "assert_not_enqueued", "enqueued_jobs"]
