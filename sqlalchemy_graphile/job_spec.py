"""How a job is scheduled: :class:`JobSpec`, :class:`JobKeyMode` and :class:`RawJobSpec`.

Every field is validated when the spec is built, so a bad value raises
:class:`InvalidJobSpecError` before any SQL runs (for :class:`JobSpec` the
:class:`JobSpecValidationError` subclass, which is a ``pydantic.ValidationError`` too).
``None`` always means "the database default".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from ._validation import raising_as
from .errors import InvalidJobSpecError, JobSpecValidationError

SMALLINT_MIN = -32768
SMALLINT_MAX = 32767
MAX_IDENTIFIER_LENGTH = 128
MAX_QUEUE_NAME_LENGTH = 128
MAX_JOB_KEY_LENGTH = 512


class JobKeyMode(StrEnum):
    """What adding a job does when a job with the same ``job_key`` exists.

    * ``REPLACE`` (default): an unlocked job is updated in place, ``run_at`` included; a
      running or dead job loses its key and a new job is created.
    * ``PRESERVE_RUN_AT``: as ``REPLACE`` but a pending job keeps its ``run_at``.
    * ``UNSAFE_DEDUPE``: the existing job, whatever its state, is kept as is; only its
      ``revision`` is bumped. Not allowed in bulk adds.
    """

    REPLACE = "replace"
    PRESERVE_RUN_AT = "preserve_run_at"
    UNSAFE_DEDUPE = "unsafe_dedupe"


def check_text(value: str, what: str = "value", error: type[Exception] = ValueError) -> str:
    """Refuse text PostgreSQL cannot store, NUL characters and lone surrogates, by raising
    ``error`` (``ValueError`` by default, which pydantic validators turn into a
    ``ValidationError``); return ``value`` unchanged."""
    if "\x00" in value:
        raise error(f"{what} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise error(f"{what} must be valid Unicode (no lone surrogates)") from None
    return value


def check_task_identifier(identifier: object) -> str:
    """Validate a task identifier: a non-empty ``str`` of at most 128 characters, storable by
    PostgreSQL. Raises :class:`InvalidJobSpecError`."""
    if not isinstance(identifier, str):
        raise InvalidJobSpecError(f"task identifier must be a str, not {type(identifier).__name__}")
    if not identifier:
        raise InvalidJobSpecError("task identifier must not be empty")
    if len(identifier) > MAX_IDENTIFIER_LENGTH:
        raise InvalidJobSpecError(
            f"task identifier is {len(identifier)} characters long; "
            f"the limit is {MAX_IDENTIFIER_LENGTH}"
        )
    return check_text(identifier, "task identifier", InvalidJobSpecError)


def _text(what: str) -> AfterValidator:
    return AfterValidator(lambda v: check_text(v, what))


QueueName = Annotated[
    str, Field(min_length=1, max_length=MAX_QUEUE_NAME_LENGTH), _text("queue_name")
]
JobKey = Annotated[str, Field(min_length=1, max_length=MAX_JOB_KEY_LENGTH), _text("job_key")]
Flag = Annotated[str, _text("flag")]
SmallInt = Annotated[int, Field(ge=SMALLINT_MIN, le=SMALLINT_MAX)]


class JobSpec(BaseModel):
    """Options for one job. Immutable; every field optional (``None`` = database default).

    * ``queue_name``: jobs sharing a queue name run one at a time (1..128 characters).
    * ``run_at``: a timezone-aware datetime before which the job does not run (naive
      datetimes are rejected).
    * ``max_attempts``: attempts before the job fails permanently, 1..32767 (default 25).
    * ``job_key``: a unique key (1..512 characters) for replacing, de-duplicating or removing
      the job; ``job_key_mode`` says what happens when the key exists.
    * ``priority``: a smallint; lower runs first (default 0).
    * ``flags``: strings a worker can refuse with ``forbidden_flags``.

    A bad value, an unknown field, or an assignment raises :class:`JobSpecValidationError`
    (an :class:`InvalidJobSpecError` and a ``pydantic.ValidationError``, naming each bad
    field).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    if not TYPE_CHECKING:
        # Pydantic raises its own ValidationError; ours is an InvalidJobSpecError too.
        # Defined for the interpreter only: type checkers keep the signatures pydantic gives.

        def __init__(self, **fields: Any) -> None:
            with raising_as(JobSpecValidationError):
                super().__init__(**fields)

        def __setattr__(self, name: str, value: Any) -> None:
            with raising_as(JobSpecValidationError):
                super().__setattr__(name, value)

        @classmethod
        def model_validate(cls, *args: Any, **kwargs: Any) -> JobSpec:
            with raising_as(JobSpecValidationError):
                return super().model_validate(*args, **kwargs)

        @classmethod
        def model_validate_json(cls, *args: Any, **kwargs: Any) -> JobSpec:
            with raising_as(JobSpecValidationError):
                return super().model_validate_json(*args, **kwargs)

        @classmethod
        def model_validate_strings(cls, *args: Any, **kwargs: Any) -> JobSpec:
            with raising_as(JobSpecValidationError):
                return super().model_validate_strings(*args, **kwargs)

    queue_name: QueueName | None = None
    run_at: AwareDatetime | None = None
    max_attempts: Annotated[int, Field(ge=1, le=SMALLINT_MAX)] | None = None
    job_key: JobKey | None = None
    job_key_mode: JobKeyMode | None = None
    priority: SmallInt | None = None
    flags: tuple[Flag, ...] | None = None


@dataclass(frozen=True, slots=True)
class RawJobSpec:
    """One job for :meth:`JobHelpers.add_raw_jobs`: a task identifier, a JSON-compatible
    payload and an optional :class:`JobSpec`. The identifier is checked on construction."""

    identifier: str
    payload: Any = None
    spec: JobSpec | None = None

    def __post_init__(self) -> None:
        check_task_identifier(self.identifier)
        if self.spec is not None and not isinstance(self.spec, JobSpec):
            raise InvalidJobSpecError(
                f"spec must be a JobSpec or None, not {type(self.spec).__name__}"
            )
