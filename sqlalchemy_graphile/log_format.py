"""Structured logs: the fields every job's log lines carry, and a JSON formatter.

Every log line the worker writes about one job (completed, failed, its outcome could not be
recorded, ...) and every line a task writes with ``ctx.logger`` carries the job's fields as
``extra`` attributes of the :class:`logging.LogRecord`:

* ``job_id``: the job's id;
* ``task``: its task identifier;
* ``queue``: its named queue, or ``None``;
* ``attempt``: which attempt this is (1 for the first run).

A handler reads them as ``record.job_id`` and so on, or prints them with
:class:`JsonFormatter`, one JSON object per line (``sqlalchemy-graphile --log-format json``)::

    import logging, sys
    from sqlalchemy_graphile.log_format import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
"""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

from .job import Job

#: The ``extra`` fields of a job's log lines, in the order :class:`JsonFormatter` prints them.
JOB_FIELDS = ("job_id", "task", "queue", "attempt")

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def job_fields(job: Job) -> dict[str, Any]:
    """The ``extra`` fields of log lines about ``job`` (see :data:`JOB_FIELDS`)."""
    return {
        "job_id": job.id,
        "task": job.task_identifier,
        "queue": job.queue_name,
        "attempt": job.attempts,
    }


class JobLogger(logging.LoggerAdapter[logging.Logger]):
    """``ctx.logger``: adds the job's fields to every record, keeping any ``extra`` the
    caller passes too (the job's fields win a clash)."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**kwargs.get("extra", {}), **(self.extra or {})}
        return msg, kwargs


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object on one line.

    Keys: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, then the job fields
    (:data:`JOB_FIELDS`) when the record has them, then any other ``extra`` attribute, and
    ``exception`` (the formatted traceback) when the record carries one. Values JSON cannot
    hold are written as their ``str()``.
    """

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in JOB_FIELDS:
            if name in record.__dict__:
                data[name] = record.__dict__[name]
        for name, value in record.__dict__.items():
            if name not in _STANDARD and name not in data:
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, ensure_ascii=False, default=str)


__all__ = ["JOB_FIELDS", "JobLogger", "JsonFormatter", "job_fields"]
