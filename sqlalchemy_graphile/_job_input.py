"""Turning the arguments of the add and admin methods into checked values, before any SQL.

Every function here is pure: it validates its input, raises one of our typed errors
(:mod:`sqlalchemy_graphile.errors`) for anything the database would refuse, and returns plain
values ready to be bound as parameters. Nothing here touches a connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from ._payload import encode_dumped, encode_payload
from .errors import (
    InvalidJobSpecError,
    InvalidPayloadError,
    InvalidTaskError,
    PayloadNotSerializableError,
)
from .job_spec import (
    MAX_JOB_KEY_LENGTH,
    SMALLINT_MAX,
    SMALLINT_MIN,
    JobKeyMode,
    JobSpec,
    RawJobSpec,
    check_task_identifier,
    check_text,
)
from .tasks import BatchTask, Task

_BIGINT_MIN = -(2**63)
_BIGINT_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class NewJob:
    """One job to add, validated: the identifier, the payload as JSON text and the spec."""

    identifier: str
    payload_json: str
    spec: JobSpec

    @property
    def flags(self) -> list[str] | None:
        """The flags as a list (what the SQL functions take), or ``None``."""
        return None if self.spec.flags is None else list(self.spec.flags)


#: The spec of a job added without one (specs are immutable, so one serves every job).
DEFAULT_SPEC = JobSpec()


def _check_spec(spec: object) -> JobSpec:
    if spec is None:
        return DEFAULT_SPEC
    if not isinstance(spec, JobSpec):
        raise InvalidJobSpecError(f"spec must be a JobSpec or None, not {type(spec).__name__}")
    return spec


def _dump(model: BaseModel) -> Any:
    # by_alias: the stored JSON must validate back into the model, and validation reads aliases.
    try:
        return model.model_dump(mode="json", by_alias=True)
    except PydanticSerializationError as error:
        raise PayloadNotSerializableError(
            f"{type(model).__qualname__} cannot be serialised to JSON: {error}"
        ) from error


def from_task(task: object, spec: object = None) -> NewJob:
    """A job for a :class:`Task` instance. :class:`InvalidTaskError` for anything else."""
    if isinstance(task, BatchTask):
        raise InvalidTaskError(
            f"{type(task).__qualname__} is a BatchTask: add its items with add_batch_job()"
        )
    if not isinstance(task, Task):
        raise InvalidTaskError(f"expected a Task instance, not {type(task).__qualname__}")
    identifier = type(task).task_identifier()
    return NewJob(identifier, encode_dumped(_dump(task)), _check_spec(spec))


def from_tasks(jobs: Iterable[tuple[Task, JobSpec | None]]) -> list[NewJob]:
    """Jobs for ``(task, spec)`` pairs that must all be of one task type."""
    if isinstance(jobs, str | bytes | BaseModel) or not isinstance(jobs, Iterable):
        raise InvalidTaskError("add_jobs() takes a list of (task, spec) pairs")
    result: list[NewJob] = []
    first_type: type | None = None
    for entry in jobs:
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise InvalidTaskError(
                f"add_jobs() takes (task, spec) pairs; got {type(entry).__qualname__}"
            )
        task, spec = entry
        new_job = from_task(task, spec)
        if first_type is None:
            first_type = type(task)
        elif type(task) is not first_type:
            raise InvalidTaskError(
                "add_jobs() takes tasks of one type; got "
                f"{first_type.__qualname__} and {type(task).__qualname__} "
                "(use add_raw_jobs() to add jobs of several types at once)"
            )
        result.append(new_job)
    return result


def from_raw(identifier: object, payload: Any = None, spec: object = None) -> NewJob:
    """A job for a task identifier and a JSON-compatible payload (``None`` means ``{}``)."""
    checked = check_task_identifier(identifier)
    payload_json = encode_payload({} if payload is None else payload)
    return NewJob(checked, payload_json, _check_spec(spec))


def from_raw_specs(jobs: Iterable[RawJobSpec]) -> list[NewJob]:
    """Jobs for a list of :class:`RawJobSpec` (any mix of task identifiers)."""
    if isinstance(jobs, str | bytes) or not isinstance(jobs, Iterable):
        raise InvalidJobSpecError("add_raw_jobs() takes a list of RawJobSpec")
    result = []
    for entry in jobs:
        if not isinstance(entry, RawJobSpec):
            raise InvalidJobSpecError(
                f"add_raw_jobs() takes RawJobSpec entries, not {type(entry).__qualname__}"
            )
        result.append(from_raw(entry.identifier, entry.payload, entry.spec))
    return result


def from_batch(items: Iterable[BatchTask], spec: object = None) -> NewJob:
    """One job whose payload is the JSON array of ``items``, all of one :class:`BatchTask`
    type. An empty list is an :class:`InvalidPayloadError`."""
    if isinstance(items, str | bytes | BaseModel) or not isinstance(items, Iterable):
        raise InvalidTaskError("add_batch_job() takes a list of BatchTask items")
    listed = list(items)
    if not listed:
        raise InvalidPayloadError("add_batch_job() needs at least one item")
    item_type: type[BatchTask] = type(listed[0])
    for item in listed:
        if not isinstance(item, BatchTask):
            raise InvalidTaskError(
                f"add_batch_job() takes BatchTask items, not {type(item).__qualname__}"
            )
        if type(item) is not item_type:
            raise InvalidTaskError(
                "add_batch_job() takes items of one type; got "
                f"{item_type.__qualname__} and {type(item).__qualname__}"
            )
    identifier = item_type.task_identifier()
    payload = [_dump(item) for item in listed]
    return NewJob(identifier, encode_dumped(payload), _check_spec(spec))


def bulk_preserve_run_at(jobs: Sequence[NewJob]) -> bool:
    """The single ``job_key_preserve_run_at`` flag for a bulk add of ``jobs``.

    Refuses, with :class:`InvalidJobSpecError`: ``UNSAFE_DEDUPE`` (the database has no bulk
    form of it), keyed jobs that mix ``REPLACE`` and ``PRESERVE_RUN_AT``, and one job key
    given twice (the database would refuse to update one row twice in a statement).
    """
    modes: set[JobKeyMode] = set()
    keys: set[str] = set()
    for job in jobs:
        if job.spec.job_key_mode is JobKeyMode.UNSAFE_DEDUPE:
            raise InvalidJobSpecError(
                "job_key_mode UNSAFE_DEDUPE cannot be used when adding several jobs at once; "
                "add such jobs one by one"
            )
        key = job.spec.job_key
        if key is None:
            continue
        if key in keys:
            raise InvalidJobSpecError(
                f"job_key {key!r} appears more than once in one bulk add; give each job its own key"
            )
        keys.add(key)
        modes.add(job.spec.job_key_mode or JobKeyMode.REPLACE)
    if len(modes) > 1:
        raise InvalidJobSpecError(
            "keyed jobs in one bulk add must share their job_key_mode (REPLACE or "
            "PRESERVE_RUN_AT); split them into separate calls"
        )
    return JobKeyMode.PRESERVE_RUN_AT in modes


def return_jobs_flag(value: object) -> bool:
    """The ``return_jobs`` argument of the bulk adds: ``True`` or ``False``, else
    :class:`InvalidJobSpecError` (a truthy string must not pick the wrong return type)."""
    if not isinstance(value, bool):
        raise InvalidJobSpecError(f"return_jobs must be True or False, not {value!r}")
    return value


def unkeyed_jobs(jobs: Sequence[NewJob], method: str) -> None:
    """Refuse, with :class:`InvalidJobSpecError`, what a ``COPY`` of ``jobs`` cannot do as
    ``add_jobs`` would: anything :func:`bulk_preserve_run_at` refuses, and any job key (a
    key may have to update or retire the job that holds it, which only the SQL function
    does)."""
    bulk_preserve_run_at(jobs)
    for job in jobs:
        if job.spec.job_key is not None:
            raise InvalidJobSpecError(
                f"{method}() adds jobs without a job_key only (got {job.spec.job_key!r}); "
                "add keyed jobs with add_jobs() or add_raw_jobs()"
            )


def job_key(key: object) -> str:
    """A job key for :meth:`remove_job`: a ``str`` of 1..512 characters PostgreSQL can store."""
    if not isinstance(key, str):
        raise InvalidJobSpecError(f"job_key must be a str, not {type(key).__name__}")
    if not 1 <= len(key) <= MAX_JOB_KEY_LENGTH:
        raise InvalidJobSpecError(
            f"job_key must be 1..{MAX_JOB_KEY_LENGTH} characters long, not {len(key)}"
        )
    return check_text(key, "job_key", InvalidJobSpecError)


def optional_text(value: object, what: str) -> str | None:
    """``None`` or a ``str`` PostgreSQL can store."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidJobSpecError(f"{what} must be a str or None, not {type(value).__name__}")
    return check_text(value, what, InvalidJobSpecError)


def _int_list(values: object, what: str) -> list[int]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidJobSpecError(f"{what} must be a list of job ids")
    result = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidJobSpecError(f"{what} must hold ints, not {type(value).__name__}")
        if not _BIGINT_MIN <= value <= _BIGINT_MAX:
            raise InvalidJobSpecError(f"job id {value} is out of the bigint range")
        result.append(value)
    return result


def job_ids(ids: object) -> list[int]:
    """Job ids for the admin methods: ints in the ``bigint`` range."""
    return _int_list(ids, "job ids")


def text_list(values: object, what: str) -> list[str]:
    """A list of strings PostgreSQL can store (worker ids, task identifiers to keep)."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidJobSpecError(f"{what} must be a list of strings, not a single value")
    result = []
    for value in values:
        if not isinstance(value, str):
            raise InvalidJobSpecError(f"{what} must hold str values, not {type(value).__name__}")
        result.append(check_text(value, what, InvalidJobSpecError))
    return result


def optional_smallint(value: object, what: str, minimum: int = SMALLINT_MIN) -> int | None:
    """``None`` or an int in ``minimum..32767``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobSpecError(f"{what} must be an int or None, not {type(value).__name__}")
    if not minimum <= value <= SMALLINT_MAX:
        raise InvalidJobSpecError(f"{what} must be between {minimum} and {SMALLINT_MAX}")
    return value


def optional_aware_datetime(value: object, what: str) -> datetime | None:
    """``None`` or a timezone-aware :class:`datetime`."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidJobSpecError(f"{what} must be a datetime or None, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidJobSpecError(f"{what} must be timezone-aware (a naive datetime is ambiguous)")
    return value
