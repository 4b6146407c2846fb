"""Cron items built in Python: validation, defaults, the job payload, and the worker's
``crontab`` option."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from sqlalchemy_graphile import (
    CronItem,
    CronItemOptions,
    CrontabError,
    JobKeyMode,
    Task,
    Worker,
    WorkerContext,
)
from sqlalchemy_graphile.cron._items import iso_timestamp

TICK = datetime(2021, 1, 1, 4, 0, tzinfo=UTC)


class Noop(Task):
    IDENTIFIER: ClassVar[str] = "noop"

    async def run(self, ctx: WorkerContext) -> None:
        return None


def test_defaults() -> None:
    item = CronItem(task="send_digest", match="0 4 * * *")
    assert item.identifier == item.key == "send_digest"
    assert item.options.backfill_period == timedelta(0)
    assert item.payload is None
    assert item.job_payload(TICK, backfilled=False) == {
        "_cron": {"ts": "2021-01-01T04:00:00.000Z", "backfilled": False}
    }
    named = CronItem(task="send_digest", match="0 5 * * *", identifier="late_digest")
    assert named.key == "late_digest"


def test_payload_is_merged_and_the_cron_key_wins() -> None:
    item = CronItem(
        task="t", match="* * * * *", payload={"_cron": "mine", "a": [1, {"b": None}], "z": 2}
    )
    payload = item.job_payload(TICK, backfilled=True)
    assert payload == {
        "_cron": {"ts": "2021-01-01T04:00:00.000Z", "backfilled": True},
        "a": [1, {"b": None}],
        "z": 2,
    }
    assert list(payload) == ["_cron", "a", "z"]
    assert item.payload == {"_cron": "mine", "a": [1, {"b": None}], "z": 2}  # left alone


def test_iso_timestamps_have_milliseconds_and_z() -> None:
    assert iso_timestamp(TICK) == "2021-01-01T04:00:00.000Z"
    east = datetime(2021, 6, 1, 12, 0, 5, 123456, tzinfo=UTC).astimezone()
    assert iso_timestamp(east) == "2021-06-01T12:00:05.123Z"


def test_key_mode_defaults_to_replace_only_with_a_key() -> None:
    assert CronItemOptions().job_key_mode is None
    assert CronItemOptions(job_key="k").job_key_mode is JobKeyMode.REPLACE
    options = CronItemOptions(job_key="k", job_key_mode="preserve_run_at")  # type: ignore[arg-type]
    assert options.job_key_mode is JobKeyMode.PRESERVE_RUN_AT


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backfill_period": 60}, "backfill_period must be a timedelta"),
        ({"backfill_period": timedelta(seconds=-1)}, "backfill_period must be a timedelta"),
        ({"job_key_mode": JobKeyMode.REPLACE}, "job_key_mode needs a job_key"),
        (
            {"job_key": "k", "job_key_mode": JobKeyMode.UNSAFE_DEDUPE},
            "job_key_mode must be 'replace' or 'preserve_run_at'",
        ),
        ({"job_key": "k", "job_key_mode": "other"}, "job_key_mode must be"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 32768}, "max_attempts"),
        ({"priority": 32768}, "priority"),
        ({"queue_name": ""}, "queue_name"),
        ({"queue_name": "q" * 129}, "queue_name"),
        ({"queue_name": "a\x00b"}, "queue_name"),
        ({"job_key": "k" * 513}, "job_key"),
    ],
)
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(CrontabError, match=message):
        CronItemOptions(**options)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"task": "", "match": "* * * * *"}, "task identifier must not be empty"),
        ({"task": "t" * 129, "match": "* * * * *"}, "the limit is 128"),
        ({"task": 3, "match": "* * * * *"}, "task identifier must be a str"),
        ({"task": "t", "match": "* * * * *", "identifier": ""}, "non-empty str"),
        ({"task": "t", "match": "* * * * *", "identifier": "a\x00"}, "NUL"),
        ({"task": "t", "match": 5}, "must be a cron pattern str or a function"),
        ({"task": "t", "match": "61 * * * *"}, "Too large value '61'"),
        ({"task": "t", "match": "* * * * *", "options": {}}, "must be a CronItemOptions"),
        ({"task": "t", "match": "* * * * *", "payload": [1]}, "must be a JSON object"),
        ({"task": "t", "match": "* * * * *", "payload": {"x": {1, 2}}}, "not JSON-serial"),
        ({"task": "t", "match": "* * * * *", "payload": {"x": float("inf")}}, "not valid JSON"),
    ],
)
def test_bad_items(item: dict[str, Any], message: str) -> None:
    with pytest.raises(CrontabError, match=message):
        CronItem(**item)


def test_worker_takes_crontab_text_or_items() -> None:
    worker = Worker("postgresql://nowhere/db", tasks=[Noop], crontab="0 4 * * * noop\n")
    assert [i.task for i in worker.options.crontab] == ["noop"]
    item = CronItem(task="noop", match="0 4 * * *")
    assert Worker("postgresql://nowhere/db", tasks=[Noop], crontab=[item]).options.crontab == (
        item,
    )
    assert Worker("postgresql://nowhere/db", tasks=[Noop]).options.crontab == ()


def test_worker_refuses_a_bad_crontab_before_connecting() -> None:
    with pytest.raises(CrontabError, match="Could not process line 2 of crontab") as caught:
        Worker("postgresql://nowhere/db", tasks=[Noop], crontab="0 4 * * * noop\n0 4 * * noop")
    assert caught.value.line == 2
    with pytest.raises(CrontabError, match="crontab text or a list of CronItem"):
        Worker("postgresql://nowhere/db", tasks=[Noop], crontab=42)  # type: ignore[arg-type]
