"""The cron page's rows: the items the database knows, joined with the crontab the dashboard
was given (the database stores no patterns), and when each item runs next."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..cron import CronItem
from ..cron._matcher import CronMatch, TimestampDigest, parse_pattern
from ._queries import KnownCrontab

#: How far ahead the next run of a time pattern is looked for (Feb 29 is within 8 years).
_PATTERN_HORIZON_DAYS = 366 * 8 + 1
#: How far ahead the next run of a match function is looked for, minute by minute.
_FUNCTION_HORIZON = timedelta(days=2)


@dataclass(frozen=True, slots=True)
class CronRow:
    """One cron item: from the crontab given to the dashboard, the database, or both."""

    identifier: str
    task: str | None
    pattern: str | None
    known_since: datetime | None
    last_execution: datetime | None
    next_run: datetime | None
    in_crontab: bool
    in_database: bool


def next_run(item: CronItem, after: datetime) -> datetime | None:
    """The first minute strictly after ``after`` that ``item`` schedules (UTC), or ``None``
    when there is none within the search horizon."""
    start = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    if isinstance(item.match, str):
        return _next_pattern_run(parse_pattern(item.match, f"cron item {item.key!r}"), start)
    when = start
    while when < start + _FUNCTION_HORIZON:
        if item.matches(when):
            return when
        when += timedelta(minutes=1)
    return None


def _next_pattern_run(match: CronMatch, start: datetime) -> datetime | None:
    day = start.replace(hour=0, minute=0)
    for _ in range(_PATTERN_HORIZON_DAYS):
        # The first allowed minute and hour make the digest match unless the day does not.
        digest = TimestampDigest(
            match.minutes[0], match.hours[0], day.day, day.month, day.isoweekday() % 7
        )
        if match(digest):
            for hour in match.hours:
                for minute in match.minutes:
                    candidate = day.replace(hour=hour, minute=minute)
                    if candidate >= start:
                        return candidate
        day += timedelta(days=1)
    return None


def cron_rows(
    items: tuple[CronItem, ...], known: list[KnownCrontab], now: datetime
) -> list[CronRow]:
    """The rows to show, sorted by identifier."""
    by_key = {item.key: item for item in items}
    stored = {row.identifier: row for row in known}
    rows = []
    for identifier in sorted(by_key.keys() | stored.keys()):
        item, row = by_key.get(identifier), stored.get(identifier)
        rows.append(
            CronRow(
                identifier=identifier,
                task=None if item is None else item.task,
                pattern=None if item is None else _pattern(item),
                known_since=None if row is None else row.known_since,
                last_execution=None if row is None else row.last_execution,
                next_run=None if item is None else next_run(item, now),
                in_crontab=item is not None,
                in_database=row is not None,
            )
        )
    return rows


def _pattern(item: CronItem) -> str:
    return item.match if isinstance(item.match, str) else "(a match function)"
