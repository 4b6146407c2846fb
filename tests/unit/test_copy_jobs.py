"""The parts of copy_jobs that need no database: which driver writes the COPY, and the text
format psycopg2 is given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from sqlalchemy_graphile import ConfigurationError
from sqlalchemy_graphile._copy_jobs import _copy_text, copy_jobs
from sqlalchemy_graphile._job_input import from_raw


class NoSql:
    """A connection of a driver without a COPY writer; sending SQL fails the test."""

    def __init__(self, driver: str) -> None:
        self.dialect = SimpleNamespace(driver=driver, is_async=False)

    def execute(self, *args: Any) -> Any:
        raise AssertionError("SQL was sent")


def test_a_driver_without_copy_is_refused_before_any_sql() -> None:
    with pytest.raises(
        ConfigurationError, match=r"asyncpg, psycopg or psycopg2 driver, not 'pg8000'"
    ):
        copy_jobs(NoSql("pg8000"), "graphile_worker", [from_raw("t")])  # type: ignore[arg-type]


def test_the_text_format_escapes_values_and_writes_null() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    later = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    records: list[tuple[Any, ...]] = [
        (1, None, 7, '{"a":"back\\\\slash"}', 0, now, 25, None),
        (2, 3, 7, '"tab\there\nline\rend"', -5, later, 1, '{"f\\tg": true}'),
        (3, None, 7, "{}", 0, now, 25, None),
    ]
    assert _copy_text(records).split("\n") == [
        '1\t\\N\t7\t{"a":"back\\\\\\\\slash"}\t0\t2026-01-02T03:04:05.000006+00:00\t25\t\\N',
        '2\t3\t7\t"tab\\there\\nline\\rend"\t-5\t2026-01-02T03:04:05+02:00\t1\t{"f\\\\tg": true}',
        "3\t\\N\t7\t{}\t0\t2026-01-02T03:04:05.000006+00:00\t25\t\\N",
        "",
    ]
