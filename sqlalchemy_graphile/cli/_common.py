"""What the commands share: finding the database and schema, engines, times and output."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from .._identifiers import resolve_schema
from .._poolers import asyncpg_engine_connect_args
from .._urls import DATABASE_URL_ENV_VAR, async_url
from ..errors import ConfigurationError
from ..job import Job

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

#: The job states ``list --state`` filters on (the Rust CLI's definitions, and
#: ``unhandled``: ready jobs of a task no worker seems to handle, a part of ``ready``).
JOB_STATES = ("all", "ready", "unhandled", "scheduled", "locked", "failed")
#: ``--unhandled-after``: seconds the oldest ready job of a task must have waited (with none
#: of the task's jobs locked) before its ready jobs show as unhandled; a worker's default
#: ``unhandled_jobs_interval``.
DEFAULT_UNHANDLED_AFTER = 300.0
#: The ``--job-key-mode`` values.
KEY_MODES = ("replace", "preserve_run_at", "unsafe_dedupe")
#: The ``cleanup`` task names (the Rust CLI's), in the order they always run, each with the
#: name :meth:`WorkerUtils.cleanup` takes for it (Graphile Worker's).
CLEANUP_TASKS = {
    "delete-permanently-failed-jobs": "DELETE_PERMAFAILED_JOBS",
    "gc-task-identifiers": "GC_TASK_IDENTIFIERS",
    "gc-job-queues": "GC_JOB_QUEUES",
}
#: The environment variable naming a worker's ``application_name``.
APPLICATION_NAME_ENV_VAR = "SG_APPLICATION_NAME"
#: The ``application_name`` of the connections admin commands open.
CLI_APPLICATION_NAME = "sqlalchemy-graphile-cli"


def key_mode_name(text: str) -> str:
    """``preserve-run-at`` and ``PRESERVE_RUN_AT`` are accepted for ``preserve_run_at``."""
    return text.strip().lower().replace("-", "_")


def cleanup_task_name(text: str) -> str:
    """A :data:`CLEANUP_TASKS` name; Graphile Worker's names are accepted too, in either
    case and with ``-`` or ``_`` (``GC_JOB_QUEUES`` for ``gc-job-queues``). Anything else is
    an ``argparse.ArgumentTypeError``."""
    name = _normal(text)
    name = next((ours for ours, theirs in CLEANUP_TASKS.items() if _normal(theirs) == name), name)
    if name not in CLEANUP_TASKS:
        raise argparse.ArgumentTypeError(
            f"unknown cleanup task {text!r} (choose from {', '.join(CLEANUP_TASKS)})"
        )
    return name


def _normal(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def database_url(args: argparse.Namespace) -> str:
    """The URL from ``-c``, else ``$DATABASE_URL``, else libpq's ``PG*`` variables when
    ``$PGDATABASE`` is set; :class:`ConfigurationError` when there is none."""
    url: str | None = getattr(args, "connection", None) or os.environ.get(DATABASE_URL_ENV_VAR)
    if url:
        return url
    if os.environ.get("PGDATABASE"):
        return "postgresql://"  # asyncpg fills in host, user and database from PG* variables
    raise ConfigurationError(
        "no database given: pass -c postgresql://user@host/dbname or set DATABASE_URL"
    )


def schema_name(args: argparse.Namespace) -> str:
    """The schema from ``-s``, else ``$GRAPHILE_WORKER_SCHEMA``, else ``graphile_worker``;
    validated (:class:`InvalidIdentifierError`)."""
    return resolve_schema(getattr(args, "schema", None))


@asynccontextmanager
async def open_engine(url: str, application_name: str | None) -> AsyncIterator[AsyncEngine]:
    """An asyncpg engine without a pool (every command is short-lived or owns its worker's
    connections), disposed on exit. ``application_name`` is set on every connection. It
    prepares only unnamed statements (a short-lived command gains nothing from named ones),
    so every command works through a pooler in transaction mode."""
    # Imported here: SQLAlchemy's asyncio extension (and the ORM it loads) is slow to
    # import, and `--help` or a usage error should not wait for it.
    from sqlalchemy import pool
    from sqlalchemy.ext.asyncio import create_async_engine

    connect_args = asyncpg_engine_connect_args("transaction")
    if application_name:
        connect_args["server_settings"] = {"application_name": application_name}
    engine = create_async_engine(async_url(url), poolclass=pool.NullPool, connect_args=connect_args)
    try:
        yield engine
    finally:
        await engine.dispose()


def parse_time(text: str) -> datetime:
    """An ISO 8601 time with a time zone (``2030-01-02T03:04:05Z``), or ``now``.

    Raises :class:`ConfigurationError` for anything else, naive times included.
    """
    if text.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigurationError(
            f"not an ISO 8601 time: {text!r} (for example 2030-01-02T03:04:05Z)"
        ) from None
    if value.tzinfo is None:
        raise ConfigurationError(f"time {text!r} has no time zone: add Z or +02:00")
    return value


def jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO text and :class:`Job` rows as objects."""
    if isinstance(value, Job):
        row = dataclasses.asdict(value)
        row["payload"] = json.loads(row.pop("payload_json"))
        return jsonable(row)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def emit(args: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    """Print ``data`` as JSON with ``--json``, else the human-readable ``text()``."""
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(jsonable(data), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(text() + "\n")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table with a header row; ``None`` shows as ``-``."""
    cells = [[("-" if c is None else _cell(c)) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value).replace("\n", " ")
