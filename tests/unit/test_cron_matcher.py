"""Matching minutes against time patterns: UTC, steps from the field minimum, 7 = Sunday, and
the day-of-month OR day-of-week rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sqlalchemy_graphile import CronItem, CrontabError, TimestampDigest
from sqlalchemy_graphile.cron._matcher import parse_pattern


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def matches(pattern: str, when: str) -> bool:
    return parse_pattern(pattern, "a test")(TimestampDigest.of(at(when)))


def test_digest_is_taken_in_utc() -> None:
    # 2021-01-01 was a Friday.
    assert TimestampDigest.of(at("2021-01-01T04:05:06")) == TimestampDigest(5, 4, 1, 1, 5)
    assert TimestampDigest.of(at("2021-01-03T00:00:00")).dow == 0  # Sunday
    tokyo = timezone(timedelta(hours=9))
    local = datetime(2021, 1, 1, 8, 30, tzinfo=tokyo)  # 23:30 on Dec 31 in UTC, a Thursday
    assert TimestampDigest.of(local) == TimestampDigest(30, 23, 31, 12, 4)


def test_every_minute_matches_everything() -> None:
    start = at("2021-01-01T00:00:00")
    every = parse_pattern("* * * * *", "a test")
    for minutes in range(0, 60 * 24 * 9, 7):
        assert every(TimestampDigest.of(start + timedelta(minutes=minutes)))


def test_day_of_week_range() -> None:
    # Friday and Saturday only.
    assert matches("* * * * 5-6", "2021-01-01T00:00:00")  # Friday
    assert matches("* * * * 5-6", "2021-01-02T23:59:00")  # Saturday
    assert not matches("* * * * 5-6", "2021-01-03T00:00:00")  # Sunday
    assert not matches("* * * * 5-6", "2021-01-07T12:00:00")  # Thursday


def test_day_of_month_or_day_of_week() -> None:
    # 00:15 to 05:15 on July 3rd and 4th, and on any Sunday, Monday or Tuesday in July.
    pattern = "0-5 15 3-4 7 0-2"
    assert matches(pattern, "2021-07-03T15:00:00")  # Saturday the 3rd: by date
    assert matches(pattern, "2021-07-04T15:05:00")  # Sunday the 4th: both
    assert matches(pattern, "2021-07-05T15:02:00")  # Monday the 5th: by weekday
    assert matches(pattern, "2021-07-13T15:00:00")  # Tuesday the 13th: by weekday
    assert not matches(pattern, "2021-07-14T15:00:00")  # Wednesday the 14th
    assert not matches(pattern, "2021-07-05T15:06:00")  # minute 6
    assert not matches(pattern, "2021-07-05T16:00:00")  # hour 16
    assert not matches(pattern, "2021-08-03T15:00:00")  # August


def test_a_field_listing_every_value_counts_as_unrestricted() -> None:
    # 1-31 is as good as *, so only the weekday restricts: no OR with "any date".
    assert matches("0 0 1-31 * 1", "2021-01-04T00:00:00")  # a Monday
    assert not matches("0 0 1-31 * 1", "2021-01-05T00:00:00")
    # 0-6 (or 0-7) is as good as *, so only the date restricts.
    assert matches("0 0 5 * 0-6", "2021-01-05T00:00:00")
    assert not matches("0 0 5 * 1-7", "2021-01-04T00:00:00")
    assert not matches("0 0 5 * 0-6", "2021-01-04T00:00:00")


def test_steps_count_from_the_field_minimum() -> None:
    match = parse_pattern("*/15 */5 */4 */5 */2", "a test")
    assert match.minutes == (0, 15, 30, 45)
    assert match.hours == (0, 5, 10, 15, 20)
    assert match.dates == (1, 5, 9, 13, 17, 21, 25, 29)
    assert match.months == (1, 6, 11)
    assert match.dows == (0, 2, 4, 6)
    assert parse_pattern("*/100 * * * *", "a test").minutes == (0,)
    assert parse_pattern("*/99999999 * * * *", "a test").minutes == (0,)


def test_seven_is_sunday_also_in_ranges_and_lists() -> None:
    assert parse_pattern("* * * * 7", "a test").dows == (0,)
    assert parse_pattern("* * * * 5-7", "a test").dows == (0, 5, 6)
    assert parse_pattern("* * * * 0,7", "a test").dows == (0,)
    assert matches("0 4 * * 7", "2021-01-03T04:00:00")


def test_lists_are_sorted_and_deduplicated() -> None:
    match = parse_pattern("*/10,7,56-59,0,7 1,1 3,1 12,1 6,0", "a test")
    assert match.minutes == (0, 7, 10, 20, 30, 40, 50, 56, 57, 58, 59)
    assert match.hours == (1,)
    assert match.dates == (1, 3)
    assert match.months == (1, 12)
    assert match.dows == (0, 6)


@pytest.mark.parametrize("pattern", ["foo", "* * * *", "* * * * * *", "", "MON * * * *"])
def test_pattern_strings_need_five_fields(pattern: str) -> None:
    with pytest.raises(CrontabError, match=r"Invalid cron pattern .* in parseCronItem"):
        parse_pattern(pattern, "parseCronItem")


def test_cron_item_matches_with_a_pattern_or_a_function() -> None:
    item = CronItem(task="t", match="30 4 * * *")
    assert item.matches(at("2021-01-01T04:30:59"))
    assert not item.matches(at("2021-01-01T04:31:00"))
    quarter = CronItem(task="t", match=lambda digest: digest.minute % 15 == 0)
    assert quarter.matches(at("2021-01-01T04:45:00"))
    assert not quarter.matches(at("2021-01-01T04:46:00"))
    with pytest.raises(CrontabError, match="Invalid cron pattern 'foo' in cron item 't'"):
        CronItem(task="t", match="foo")
