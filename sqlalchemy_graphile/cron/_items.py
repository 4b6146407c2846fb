"""Cron items: which task to schedule, when, with which job options and payload.

Items are validated when they are built, so a bad item raises :class:`CrontabError` (a
:class:`ConfigurationError`) before a worker connects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic

from .._payload import encode_payload
from .._validation import validation_problems
from ..errors import CrontabError, GraphileWorkerError
from ..job_spec import JobKeyMode, JobSpec, check_task_identifier, check_text
from ._matcher import CronMatch, TimestampDigest, parse_pattern

#: A match function: ``True`` for the minutes (given as a digest in UTC) to schedule.
Matcher = Callable[[TimestampDigest], bool]

#: The key every cron job's payload gets, with the tick and whether it was backfilled.
CRON_PAYLOAD_KEY = "_cron"


@dataclass(frozen=True, slots=True)
class CronItemOptions:
    """How the jobs of a cron item are added.

    * ``backfill_period``: after a worker was down, schedule the ticks it missed within
      this period (crontab ``?fill=``; default none). Only items the database already knows
      are backfilled.
    * ``max_attempts`` (``?max=``), ``queue_name`` (``?queue=``), ``priority``
      (``?priority=``): as in :class:`JobSpec`; ``None`` is the database default.
    * ``job_key`` (``?jobKey=``) and ``job_key_mode`` (``?jobKeyMode=``): with a key, each
      tick replaces the job of the previous one if it has not started yet. The mode is
      ``REPLACE`` (the default when a key is given) or ``PRESERVE_RUN_AT``; it needs a key.

    Raises :class:`CrontabError` for a value a job could not have.
    """

    backfill_period: timedelta = timedelta(0)
    max_attempts: int | None = None
    queue_name: str | None = None
    job_key: str | None = None
    job_key_mode: JobKeyMode | None = None
    priority: int | None = None

    def __post_init__(self) -> None:
        period = self.backfill_period
        if not isinstance(period, timedelta) or period < timedelta(0):
            raise CrontabError(
                f"backfill_period must be a timedelta of zero or more, not {period!r}"
            )
        mode = self.job_key_mode
        if mode is not None:
            if self.job_key is None:
                raise CrontabError("job_key_mode needs a job_key")
            if mode not in (JobKeyMode.REPLACE, JobKeyMode.PRESERVE_RUN_AT):
                raise CrontabError(
                    f"job_key_mode must be 'replace' or 'preserve_run_at', not {mode!r}"
                )
        try:
            spec = JobSpec(
                queue_name=self.queue_name,
                max_attempts=self.max_attempts,
                job_key=self.job_key,
                job_key_mode=mode,
                priority=self.priority,
            )
        except pydantic.ValidationError as error:
            problems = validation_problems(error)
            raise CrontabError(f"invalid cron item options: {problems}") from None
        if spec.job_key is not None and spec.job_key_mode is None:
            object.__setattr__(self, "job_key_mode", JobKeyMode.REPLACE)
        else:
            object.__setattr__(self, "job_key_mode", spec.job_key_mode)
        object.__setattr__(self, "max_attempts", spec.max_attempts)
        object.__setattr__(self, "priority", spec.priority)


@dataclass(frozen=True, slots=True)
class CronItem:
    """A recurring task: add a job for ``task`` at every minute ``match`` selects.

    ::

        CronItem(task="send_digest", match="0 4 * * 1-5")
        CronItem(
            task="sync",
            match=lambda d: d.minute % 15 == 0,
            options=CronItemOptions(backfill_period=timedelta(hours=1), queue_name="sync"),
            payload={"full": False},
            identifier="sync_quarter_hourly",
        )

    * ``task``: the task identifier of the jobs.
    * ``match``: a five-field time pattern (``minute hour day-of-month month
      day-of-week``, in UTC) or a function taking a :class:`TimestampDigest` of the
      minute and returning whether to schedule it.
    * ``options``: :class:`CronItemOptions`.
    * ``payload``: a JSON object merged into each job's payload (default ``{}``). The key
      ``_cron`` is always set to ``{"ts": <the minute, ISO 8601>, "backfilled": <bool>}``.
    * ``identifier``: names the item in the ``_private_known_crontabs`` table, which
      records the last minute scheduled (default: ``task``). Identifiers are unique per
      worker; workers sharing a database and an identifier schedule each minute once.

    Raises :class:`CrontabError` for a bad value.
    """

    task: str
    match: str | Matcher
    options: CronItemOptions = CronItemOptions()
    payload: Mapping[str, Any] | None = None
    identifier: str | None = None
    _matcher: Matcher = field(init=False, repr=False, compare=False)
    _payload_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            check_task_identifier(self.task)
        except GraphileWorkerError as error:
            raise CrontabError(f"invalid cron item task: {error}") from None
        identifier = self.task if self.identifier is None else self.identifier
        if not isinstance(identifier, str) or not identifier:
            raise CrontabError(f"a cron item identifier must be a non-empty str: {identifier!r}")
        check_text(identifier, "a cron item identifier", CrontabError)
        object.__setattr__(self, "identifier", identifier)
        if not isinstance(self.options, CronItemOptions):
            raise CrontabError(
                f"options must be a CronItemOptions, not {type(self.options).__name__}"
            )
        object.__setattr__(self, "_matcher", _matcher(self.match, f"cron item {identifier!r}"))
        object.__setattr__(self, "_payload_json", _payload_json(self.payload, identifier))

    @property
    def key(self) -> str:
        """The identifier (``identifier``, or ``task`` when none was given)."""
        return self.identifier or self.task

    def matches(self, when: datetime) -> bool:
        """Whether the minute of ``when`` (an aware datetime) is one to schedule."""
        return bool(self._matcher(TimestampDigest.of(when)))

    def job_payload(self, tick: datetime, *, backfilled: bool) -> dict[str, Any]:
        """The payload of the job for ``tick``: :attr:`payload` with the ``_cron`` key."""
        payload: dict[str, Any] = json.loads(self._payload_json)
        payload[CRON_PAYLOAD_KEY] = {"ts": iso_timestamp(tick), "backfilled": backfilled}
        return payload


def iso_timestamp(when: datetime) -> str:
    """``when`` in UTC as ISO 8601 with milliseconds and ``Z``: ``2021-01-01T04:00:00.000Z``."""
    utc = when.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def check_unique(items: Iterable[CronItem], hint: str) -> None:
    """Raise :class:`CrontabError` if two items share an identifier."""
    seen: set[str] = set()
    duplicates: list[str] = []
    for item in items:
        if item.key in seen and item.key not in duplicates:
            duplicates.append(item.key)
        seen.add(item.key)
    if duplicates:
        names = ", ".join(repr(d) for d in sorted(duplicates))
        raise CrontabError(f"duplicate cron item identifiers: {names}; {hint}")


def _matcher(match: object, source: str) -> Matcher:
    if isinstance(match, str):
        parsed: CronMatch = parse_pattern(match, source)
        return parsed
    if callable(match):
        return match
    raise CrontabError(
        f"match of {source} must be a cron pattern str or a function of a TimestampDigest, "
        f"not {type(match).__name__}"
    )


def _payload_json(payload: object, identifier: str) -> str:
    if payload is None:
        return "{}"
    if not isinstance(payload, Mapping):
        raise CrontabError(
            f"the payload of cron item {identifier!r} must be a JSON object (a mapping), "
            f"not {type(payload).__name__}"
        )
    try:
        return encode_payload(dict(payload))
    except GraphileWorkerError as error:
        raise CrontabError(f"the payload of cron item {identifier!r}: {error}") from None
