"""The JSON log formatter."""

from __future__ import annotations

import json
import logging
import sys

from sqlalchemy_graphile.log_format import JsonFormatter


def _record(**extra: object) -> logging.LogRecord:
    logger = logging.getLogger("sg.test")
    return logger.makeRecord(
        "sg.test", logging.WARNING, __file__, 1, "hi %s", ("there",), None, extra=extra
    )


def test_a_plain_record_has_the_four_keys() -> None:
    data = json.loads(JsonFormatter().format(_record()))
    assert list(data) == ["time", "level", "logger", "message"]
    assert (data["level"], data["logger"], data["message"]) == ("WARNING", "sg.test", "hi there")
    assert data["time"].endswith("+00:00")


def test_job_fields_come_first_and_other_extras_follow_as_text_when_needed() -> None:
    data = json.loads(
        JsonFormatter().format(_record(step=object, attempt=2, job_id=7, task="t", queue=None))
    )
    assert list(data)[4:] == ["job_id", "task", "queue", "attempt", "step"]
    assert data["step"] == str(object)


def test_an_exception_is_one_string_on_the_same_line() -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        record = logging.getLogger("sg.test").makeRecord(
            "sg.test", logging.ERROR, __file__, 1, "oops", (), sys.exc_info()
        )
    text = JsonFormatter().format(record)
    assert "\n" not in text
    assert "KeyError: 'missing'" in json.loads(text)["exception"]
