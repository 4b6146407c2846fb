"""Cron time patterns: the five fields of a crontab line, and whether a minute matches them.

A pattern is ``minute hour day-of-month month day-of-week``, each field a comma list of
numbers, ranges ``a-b`` (``b > a``), ``*`` and ``*/n`` (every ``n``, counted from the
field's minimum). Day of week runs from 0 (Sunday) to 6; 7 also means Sunday. Names
(``MON``, ``JAN``), ``?``, ``L``, ``W``, ``#`` and steps on ranges (``1-30/5``) are not
supported. Every time is taken in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from ..errors import CrontabError

#: The five time fields, separated by whitespace.
TIME_FIELDS = r"([0-9*/,-]+)\s+([0-9*/,-]+)\s+([0-9*/,-]+)\s+([0-9*/,-]+)\s+([0-9*/,-]+)"
_PATTERN = re.compile(TIME_FIELDS)
_NUMBER = re.compile(r"[0-9]+")
_RANGE = re.compile(r"([0-9]+)-([0-9]+)")
_WILDCARD = re.compile(r"\*(?:/([0-9]+))?")


class TimestampDigest(NamedTuple):
    """The parts of a minute that cron matches on, in UTC. ``dow`` is the day of the week,
    0 (Sunday) to 6 (Saturday)."""

    minute: int
    hour: int
    date: int
    month: int
    dow: int

    @classmethod
    def of(cls, when: datetime) -> TimestampDigest:
        """The digest of an aware datetime, converted to UTC."""
        utc = when.astimezone(UTC)
        return cls(utc.minute, utc.hour, utc.day, utc.month, utc.isoweekday() % 7)


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    seven_is_sunday: bool = False


_MINUTES = _Field("minutes", 0, 59)
_HOURS = _Field("hours", 0, 23)
_DATES = _Field("dates", 1, 31)
_MONTHS = _Field("months", 1, 12)
_DOWS = _Field("days of week", 0, 6, seven_is_sunday=True)


@dataclass(frozen=True, slots=True)
class CronMatch:
    """A parsed time pattern: the sorted values each field allows. Call it with a
    :class:`TimestampDigest` to test a minute.

    When both day of month and day of week are restricted (fewer than all their values),
    a minute matches if *either* does, as in classic cron; otherwise both must.
    """

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    dates: tuple[int, ...]
    months: tuple[int, ...]
    dows: tuple[int, ...]

    def __call__(self, digest: TimestampDigest) -> bool:
        if not (
            digest.minute in self.minutes
            and digest.hour in self.hours
            and digest.month in self.months
        ):
            return False
        dates_restricted = len(self.dates) != _DATES.high
        dows_restricted = len(self.dows) != _DOWS.high + 1
        if dates_restricted and dows_restricted:
            return digest.date in self.dates or digest.dow in self.dows
        if dates_restricted:
            return digest.date in self.dates
        if dows_restricted:
            return digest.dow in self.dows
        return True


def parse_pattern(pattern: str, source: str) -> CronMatch:
    """Parse a five-field time pattern such as ``"0 */4 * * 1-5"``.

    ``source`` says where the pattern came from, for error messages. Raises
    :class:`CrontabError`.
    """
    matched = _PATTERN.fullmatch(pattern.strip())
    if matched is None:
        raise CrontabError(f"Invalid cron pattern {pattern!r} in {source}")
    return match_from_fields(matched.groups(), source)


def match_from_fields(fields: tuple[str | None, ...], source: str) -> CronMatch:
    """Build a :class:`CronMatch` from the five field texts. Raises :class:`CrontabError`."""
    minutes, hours, dates, months, dows = (
        _parse_field(text or "", spec, source)
        for text, spec in zip(fields, (_MINUTES, _HOURS, _DATES, _MONTHS, _DOWS), strict=True)
    )
    return CronMatch(minutes, hours, dates, months, dows)


def _parse_field(text: str, spec: _Field, source: str) -> tuple[int, ...]:
    where = f"{spec.name} range in {source}"
    values: set[int] = set()
    for part in text.split(","):
        if _NUMBER.fullmatch(part):
            values.add(_checked(_int(part, spec, where), spec, where))
        elif ranged := _RANGE.fullmatch(part):
            start, end = _int(ranged.group(1), spec, where), _int(ranged.group(2), spec, where)
            if end <= start:
                raise CrontabError(
                    f"Invalid range {part!r} in {where}: the end must be larger than the start"
                )
            _checked(start, spec, where)
            _checked(end, spec, where)
            values.update(_checked(n, spec, where) for n in range(start, end + 1))
        elif wildcard := _WILDCARD.fullmatch(part):
            step_text = wildcard.group(1) or "1"
            # A step beyond the field's span keeps only the minimum; no need to read it all.
            step = int(step_text) if len(step_text) <= 6 else spec.high + 1
            if step < 1:
                raise CrontabError(
                    f"Invalid wildcard expression {part!r} in {where}: "
                    f"the step {wildcard.group(1)!r} must be at least 1"
                )
            values.update(range(spec.low, spec.high + 1, step))
        else:
            raise CrontabError(
                f"Unsupported syntax {part!r} in {where}: expected a number, a range a-b, * or */n"
            )
    return tuple(sorted(values))


def _int(digits: str, spec: _Field, where: str) -> int:
    """The value of a run of digits (a run too long for any field is refused before it
    reaches ``int()``)."""
    if len(digits) > 6:
        raise CrontabError(
            f"Too large value '{digits[:12]}...' in {where}: expected values in the range "
            f"{spec.low}-{spec.high}"
        )
    return int(digits)


def _checked(value: int, spec: _Field, where: str) -> int:
    if spec.seven_is_sunday and value == spec.high + 1:
        return spec.low
    if value > spec.high:
        raise CrontabError(
            f"Too large value '{value}' in {where}: expected values in the range "
            f"{spec.low}-{spec.high}"
        )
    if value < spec.low:
        raise CrontabError(
            f"Too small value '{value}' in {where}: expected values in the range "
            f"{spec.low}-{spec.high}"
        )
    return value
