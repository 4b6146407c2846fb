"""Crontab text to cron items: Graphile Worker's example crontab, and every kind of bad line."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sqlalchemy_graphile import (
    ConfigurationError,
    CronItem,
    CronItemOptions,
    CrontabError,
    JobKeyMode,
    parse_crontab,
)
from sqlalchemy_graphile.cron import CronMatch
from sqlalchemy_graphile.cron._parser import crontab_items, parse_time_phrase

ALL_MINUTES = tuple(range(60))
ALL_HOURS = tuple(range(24))
ALL_DATES = tuple(range(1, 32))
ALL_MONTHS = tuple(range(1, 13))
ALL_DOWS = tuple(range(7))

EXAMPLE = """\
# ┌───────────── UTC minute (0 - 59)
# │ ┌───────────── UTC hour (0 - 23)
# │ │ ┌───────────── UTC day of the month (1 - 31)
# │ │ │ ┌───────────── UTC month (1 - 12)
# │ │ │ │ ┌───────────── UTC day of the week (0 - 6) (Sunday to Saturday)
# │ │ │ │ │ ┌───────────── task (identifier) to schedule
# │ │ │ │ │ │    ┌────────── optional scheduling options
# │ │ │ │ │ │    │     ┌────── optional payload to merge
# * * * * * task ?opts {payload}

* * * * * simple
0 4 * * * every_day_at_4_am
0 4 * * 0 every_sunday_at_4_am
0 4 * * 7 every_sunday_at_4_am ?id=sunday_7



0 4 * * 2 every_tuesday_at_4_am {isTuesday: true}
*/10,7,56-59 1 1 1 1 one ?id=stuff&fill=4w3d2h1m&max=3&queue=my_queue&priority=3 {myExtraPayload:{stuff:"here with # hash char"}}
    *     *      *       *       *      lots_of_spaces     
* * * * * with_key ?jobKey=my_key
* * * * * with_key_and_mode ?jobKey=my_key&jobKeyMode=preserve_run_at
* * * * * nested/task ?jobKey=my_key&jobKeyMode=preserve_run_at
* * * * * nested/folder/task ?jobKey=my_key&jobKeyMode=preserve_run_at
"""  # noqa: E501, W291


def fields(item: CronItem) -> tuple[tuple[int, ...], ...]:
    assert isinstance(item.match, CronMatch)
    match = item.match
    return (match.minutes, match.hours, match.dates, match.months, match.dows)


EVERY_MINUTE = (ALL_MINUTES, ALL_HOURS, ALL_DATES, ALL_MONTHS, ALL_DOWS)
AT_FOUR = ((0,), (4,), ALL_DATES, ALL_MONTHS)


def test_parses_the_example_crontab() -> None:
    items = parse_crontab(EXAMPLE)
    assert [(i.task, i.identifier) for i in items] == [
        ("simple", "simple"),
        ("every_day_at_4_am", "every_day_at_4_am"),
        ("every_sunday_at_4_am", "every_sunday_at_4_am"),
        ("every_sunday_at_4_am", "sunday_7"),
        ("every_tuesday_at_4_am", "every_tuesday_at_4_am"),
        ("one", "stuff"),
        ("lots_of_spaces", "lots_of_spaces"),
        ("with_key", "with_key"),
        ("with_key_and_mode", "with_key_and_mode"),
        ("nested/task", "nested/task"),
        ("nested/folder/task", "nested/folder/task"),
    ]
    simple, day, sunday, sunday_7, tuesday, one, spaces, key, key_mode, nested, deep = items

    assert fields(simple) == EVERY_MINUTE
    assert simple.options == CronItemOptions()
    assert simple.options.backfill_period == timedelta(0)
    assert simple.payload is None

    assert fields(day) == (*AT_FOUR, ALL_DOWS)
    assert fields(sunday) == (*AT_FOUR, (0,))
    assert fields(sunday_7) == (*AT_FOUR, (0,))  # 7 is Sunday too
    assert fields(tuesday) == (*AT_FOUR, (2,))
    assert tuesday.payload == {"isTuesday": True}
    for item in (day, sunday, sunday_7, tuesday):
        assert item.options == CronItemOptions()

    assert fields(one) == ((0, 7, 10, 20, 30, 40, 50, 56, 57, 58, 59), (1,), (1,), (1,), (1,))
    assert one.options == CronItemOptions(
        backfill_period=timedelta(weeks=4, days=3, hours=2, minutes=1),
        max_attempts=3,
        queue_name="my_queue",
        priority=3,
    )
    assert one.payload == {"myExtraPayload": {"stuff": "here with # hash char"}}

    assert fields(spaces) == EVERY_MINUTE
    assert spaces.payload is None

    assert key.options == CronItemOptions(job_key="my_key", job_key_mode=JobKeyMode.REPLACE)
    assert key.options.job_key_mode is JobKeyMode.REPLACE  # the default once a key is given
    preserve = CronItemOptions(job_key="my_key", job_key_mode=JobKeyMode.PRESERVE_RUN_AT)
    for item in (key_mode, nested, deep):
        assert item.options == preserve
        assert fields(item) == EVERY_MINUTE


def test_windows_line_endings_and_blank_text() -> None:
    items = parse_crontab("# comment\r\n0 1 * * * a\r\n\r\n0 2 * * * b\r\n")
    assert [(i.task, fields(i)[1]) for i in items] == [("a", (1,)), ("b", (2,))]
    assert parse_crontab("") == []
    assert parse_crontab("\n  # only a comment\n\n") == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        # too few fields
        ("* * * * too_few_parameters", "Could not process line 1 of crontab"),
        ("* * * * *", "Could not process line 1 of crontab"),
        ("MON * * * * named", "Could not process line 1 of crontab"),
        # invalid command
        ("* * * * * two tasks", "Invalid command specification in line 1 of crontab"),
        ("* * * * * 1task", "Invalid command specification in line 1 of crontab"),
        ("* * * * * task ?a=1 ?b=2", "Invalid command specification in line 1 of crontab"),
        ("* * * * * task {a: 1} tail", "Invalid command specification in line 1 of crontab"),
        # out of range
        (
            "1,60 * * * * out_of_range",
            "Too large value '60' in minutes range in line 1 of crontab: "
            "expected values in the range 0-59",
        ),
        ("* 24 * * * late", "Too large value '24' in hours range"),
        ("* * 0 * * day_zero", "Too small value '0' in dates range"),
        ("* * 32 * * day_32", "Too large value '32' in dates range"),
        ("* * * 0 * month_zero", "Too small value '0' in months range"),
        ("* * * 13 * month_13", "Too large value '13' in months range"),
        ("* * * * 8 dow_8", "Too large value '8' in days of week range"),
        ("* * * * 5-8 dow_range", "Too large value '8' in days of week range"),
        ("1234567 * * * * huge", "Too large value '1234567...' in minutes range"),
        # ranges and wildcards
        ("5-5 * * * * empty_range", "Invalid range '5-5' in minutes range"),
        ("9-3 * * * * backwards", "Invalid range '9-3' in minutes range"),
        (
            "*/0 * * * * division_by_zero",
            "Invalid wildcard expression '*/0' in minutes range in line 1 of crontab",
        ),
        ("1-30/5 * * * * stepped_range", "Unsupported syntax '1-30/5' in minutes range"),
        ("*/ * * * * no_step", "Unsupported syntax '*/' in minutes range"),
        ("1,,2 * * * * empty_part", "Unsupported syntax '' in minutes range"),
        # options
        (
            "* * * * * invalid_options ?unknown=3",
            "Options on line 1 of crontab contain the unsupported key 'unknown'; supported keys "
            "are: 'id', 'fill', 'max', 'queue', 'jobKey', 'jobKeyMode', 'priority'",
        ),
        ("* * * * * twice ?max=1&max=2", "give 'max' more than once"),
        ("* * * * * bad_id ?id=1abc", "invalid value for 'id': '1abc'"),
        ("* * * * * bad_fill ?fill=1y", "invalid value for 'fill': '1y'"),
        ("* * * * * bad_fill ?fill=", "invalid value for 'fill': ''"),
        ("* * * * * bad_max ?max=-1", "invalid value for 'max': '-1'"),
        ("* * * * * bad_queue ?queue=a%20b", "invalid value for 'queue': 'a b'"),
        ("* * * * * bad_mode ?jobKey=k&jobKeyMode=unsafe_dedupe", "invalid value for 'jobKeyMode'"),
        ("* * * * * bad_priority ?priority=1.5", "invalid value for 'priority': '1.5'"),
        ("* * * * * max_zero ?max=0", "max_attempts"),
        ("* * * * * max_huge ?max=40000", "max_attempts"),
        ("* * * * * priority_huge ?priority=-40000", "priority"),
        ("* * * * * empty_key ?jobKey=", "job_key"),
        ("* * * * * mode_without_key ?jobKeyMode=replace", "job_key_mode needs a job_key"),
        ("* * * * * long_max ?max=12345678901234", "'12345678901234' is out of range"),
        # payload
        (
            "* * * * * json_syntax_error {invalidJson=true}",
            "Failed to parse JSON5 payload on line 1 of crontab",
        ),
        ("* * * * * not_closed {a: [1, 2}", "Failed to parse JSON5 payload on line 1"),
        ("* * * * * nan_payload {a: NaN}", "payload"),
        ("* * * * * nul_payload {a: '\\u0000'}", "NUL"),
    ],
)
def test_bad_lines_raise_crontab_errors(line: str, message: str) -> None:
    with pytest.raises(CrontabError) as caught:
        parse_crontab(f"# a comment\n\n{line}\n")
    assert message.replace("line 1", "line 3") in str(caught.value)
    assert caught.value.line == 3
    assert isinstance(caught.value, ConfigurationError)
    assert isinstance(caught.value, ValueError)


def test_duplicate_identifiers_are_refused() -> None:
    with pytest.raises(
        CrontabError, match=r"duplicate cron item identifiers: 'a', 'b'; use '\?id="
    ):
        parse_crontab("* * * * * a\n* * * * * b\n0 * * * * a\n0 * * * * b\n0 0 * * * b")
    items = parse_crontab("* * * * * a\n0 * * * * a ?id=hourly_a")
    assert [i.identifier for i in items] == ["a", "hourly_a"]


def test_options_are_url_decoded() -> None:
    (item,) = parse_crontab("* * * * * t ?jobKey=a%20key+with%26more&queue=q:1&priority=-5")
    assert item.options.job_key == "a key with&more"
    assert item.options.queue_name == "q:1"
    assert item.options.priority == -5


def test_payload_is_json5() -> None:
    (item,) = parse_crontab(
        "* * * * * t {unquoted: 'single', trailing: [1, 2,], hex: 0x10, /* note */ nested: {}}"
    )
    assert item.payload == {"unquoted": "single", "trailing": [1, 2], "hex": 16, "nested": {}}


def test_time_phrases() -> None:
    assert parse_time_phrase("1s") == timedelta(seconds=1)
    assert parse_time_phrase("90m") == timedelta(minutes=90)
    assert parse_time_phrase("1d1d") == timedelta(days=2)
    assert parse_time_phrase("4w3d2h1m") == timedelta(minutes=44761)
    with pytest.raises(CrontabError, match="did not understand 'x'"):
        parse_time_phrase("1dx")
    with pytest.raises(CrontabError, match="too long"):
        parse_time_phrase("99999999999w")


def test_crontab_option_forms() -> None:
    assert crontab_items(None) == ()
    assert [i.task for i in crontab_items("0 4 * * * a\n0 5 * * * b")] == ["a", "b"]
    items = [CronItem(task="a", match="* * * * *"), CronItem(task="b", match="0 * * * *")]
    assert crontab_items(items) == tuple(items)
    assert crontab_items(iter(items)) == tuple(items)
    with pytest.raises(CrontabError, match="crontab text or a list of CronItem, not int"):
        crontab_items(3)
    with pytest.raises(CrontabError, match="crontab text or a list of CronItem, not bytes"):
        crontab_items(b"* * * * * a")
    with pytest.raises(CrontabError, match="must be CronItem objects"):
        crontab_items(["* * * * * a"])
    with pytest.raises(CrontabError, match="duplicate cron item identifiers: 'a'"):
        crontab_items([items[0], CronItem(task="a", match="0 0 * * *")])
    with pytest.raises(CrontabError, match="a crontab must be a str"):
        parse_crontab(None)  # type: ignore[arg-type]
