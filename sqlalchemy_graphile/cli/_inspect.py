"""Read-only commands: ``list``, ``show``, ``stats``, ``queues`` and ``workers``.

They run the query catalog's statements (its ``inspect`` section, and the dashboard's for one
job and the counts) in one read-only transaction of their own, and never lock anything. Jobs
are read with the catalog's job columns and built by its one row mapping.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from .._catalog import Catalog, catalog_for
from .._catalog._columns import QUEUE_NAME, TASK_IDENTIFIER, Row, job_from_row
from .._catalog._job_filters import JobFilterShape
from .._catalog._job_states import JOB_STATES
from .._recovery import RegisteredWorker
from .._store._sqlalchemy_recovery import SqlAlchemyRecoveryStore
from ..errors import ConfigurationError
from ..worker._unhandled import Unhandled, unhandled_rows
from ._common import CLI_APPLICATION_NAME, database_url, emit, open_engine, schema_name, table

_SHOWN_COLUMNS = (
    "payload",
    "priority",
    "run_at",
    "attempts",
    "max_attempts",
    "last_error",
    "created_at",
    "updated_at",
    "key",
    "locked_at",
    "locked_by",
    "revision",
    "flags",
)


@asynccontextmanager
async def _reading(args: argparse.Namespace) -> AsyncIterator[AsyncConnection]:
    engine_opened = open_engine(database_url(args), CLI_APPLICATION_NAME)
    async with engine_opened as engine, engine.connect() as connection:
        await connection.exec_driver_sql("set transaction read only")
        yield connection


def _catalog(args: argparse.Namespace) -> Catalog:
    return catalog_for(schema_name(args))


def _job(row: Row, state: str) -> dict[str, Any]:
    """A row of job columns and names as the ``jobs`` view shows it (its columns in its
    order, no payload), with its ``state``."""
    job = job_from_row(row, row[TASK_IDENTIFIER], row[QUEUE_NAME])
    shown = {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}
    del shown["payload_json"]
    return {"id": job.id, "queue_name": job.queue_name, **shown, "state": state}


async def _registered(connection: AsyncConnection, schema: str) -> dict[str, RegisteredWorker]:
    """The registered workers by id; none on a schema without revision 20."""
    store = SqlAlchemyRecoveryStore(connection, catalog_for(schema))
    if not await store.available():
        return {}
    return {worker.id: worker for worker in await store.list_workers()}


def _id_summary(ids: Sequence[int], shown: int = 10) -> str | None:
    if not ids:
        return None
    more = f" (+{len(ids) - shown})" if len(ids) > shown else ""
    return ", ".join(map(str, ids[:shown])) + more


async def _unhandled(connection: AsyncConnection, args: argparse.Namespace) -> list[Unhandled]:
    """The tasks whose ready jobs no worker seems to handle (the statement a worker's check
    runs, with no identifier left out)."""
    statement = catalog_for(schema_name(args)).health.unhandled
    values = {"handled": [], "min_wait": float(args.unhandled_after)}
    result = await connection.execute(statement.clause, values)
    return unhandled_rows(result.all())


async def list_jobs(args: argparse.Namespace) -> int:
    """``list``: jobs in run order (priority, run_at, id), filtered by state, task and queue.
    Ready jobs of tasks no worker seems to handle show as ``unhandled``."""
    unhandled_only = args.state == "unhandled"
    shape = JobFilterShape(
        "ready" if unhandled_only else args.state,
        task=args.identifier is not None,
        queue=args.queue is not None,
    )
    statement = _catalog(args).inspect.jobs(shape, unhandled_only=unhandled_only)
    async with _reading(args) as connection:
        unhandled = [entry.identifier for entry in await _unhandled(connection, args)]
        params: dict[str, Any] = {"limit": args.limit, "offset": args.offset}
        if args.identifier is not None:
            params["task"] = args.identifier
        if args.queue is not None:
            params["queue"] = args.queue
        if unhandled_only:
            params["unhandled"] = unhandled
        rows = (await connection.execute(statement.clause, params)).all()
    jobs = [
        _job(r, "unhandled" if r.state == "ready" and r[TASK_IDENTIFIER] in unhandled else r.state)
        for r in rows
    ]
    headers = ["id", "task", "queue", "state", "pri", "run_at", "attempts", "key", "last_error"]

    def text() -> str:
        if not jobs:
            return "No jobs."
        return table(headers, [_list_row(j) for j in jobs])

    emit(args, jobs, text)
    return 0


def _list_row(job: dict[str, Any]) -> list[Any]:
    attempts = f"{job['attempts']}/{job['max_attempts']}"
    return [
        *(job[c] for c in ("id", "task_identifier", "queue_name", "state", "priority", "run_at")),
        attempts,
        job["key"],
        _shorten(job["last_error"]),
    ]


def _shorten(text: str | None, limit: int = 60) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


async def show(args: argparse.Namespace) -> int:
    """``show ID``: every column of one job, its payload and state included."""
    statement = _catalog(args).dashboard.job
    async with _reading(args) as connection:
        row = (await connection.execute(statement.clause, {"job_id": args.job_id})).one_or_none()
    if row is None:
        raise ConfigurationError(f"there is no job with id {args.job_id}")
    found = job_from_row(row, row[TASK_IDENTIFIER], row[QUEUE_NAME])
    job = {
        "id": found.id,
        "task_identifier": found.task_identifier,
        "queue_name": found.queue_name,
        "state": row.state,
        **{c: getattr(found, c) for c in _SHOWN_COLUMNS},
    }

    def text() -> str:
        width = max(len(k) for k in job)
        lines = []
        for name, value in job.items():
            shown = json.dumps(value, ensure_ascii=False) if name in ("payload", "flags") else value
            lines.append(f"{name.ljust(width)}  {'-' if value is None else shown}")
        return "\n".join(lines)

    emit(args, job, text)
    return 0


async def stats(args: argparse.Namespace) -> int:
    """``stats``: job counts by state, overall and per queue."""
    statement = _catalog(args).dashboard.overview
    async with _reading(args) as connection:
        counted = (await connection.execute(statement.clause)).all()
        unhandled = await _unhandled(connection, args)
    totals: dict[str, int] = {"total": 0, **dict.fromkeys(JOB_STATES, 0)}
    per_queue = []
    for row in counted:
        counts = {state: int(getattr(row, state)) for state in JOB_STATES}
        if row.task_grouped and row.queue_grouped:
            totals = {"total": sum(counts.values()), **counts}
        elif row.task_grouped and row.queue_name is not None:
            per_queue.append(
                {"queue_name": row.queue_name, "total": sum(counts.values()), **counts}
            )
    per_queue.sort(key=lambda queue: str(queue["queue_name"]))
    totals["unhandled"] = sum(entry.ready for entry in unhandled)
    result = {
        "jobs": totals,
        "queues": per_queue,
        "unhandled": [dataclasses.asdict(entry) for entry in unhandled],
    }

    def text() -> str:
        lines = ["Jobs: " + ", ".join(f"{k} {v}" for k, v in totals.items())]
        if per_queue:
            lines += [
                "",
                table(["queue", "total", *JOB_STATES], [list(q.values()) for q in per_queue]),
            ]
        if unhandled:
            lines += [
                "",
                "Unhandled: ready jobs of tasks no worker seems to handle (none of their jobs "
                f"is locked; the oldest ready for over {args.unhandled_after:g} s):",
                table(
                    ["task", "ready", "oldest_run_at"],
                    [[e.identifier, e.ready, e.oldest_run_at] for e in unhandled],
                ),
            ]
        return "\n".join(lines)

    emit(args, result, text)
    return 0


async def queues(args: argparse.Namespace) -> int:
    """``queues``: every named queue with its lock and how many jobs it holds."""
    statement = _catalog(args).inspect.queues
    async with _reading(args) as connection:
        result = await connection.execute(statement.clause)
        rows = [r._asdict() for r in result.all()]

    def text() -> str:
        if not rows:
            return "No named queues."
        return table(
            ["queue", "jobs", "locked_by", "locked_at"],
            [[r["queue_name"], r["jobs"], r["locked_by"], r["locked_at"]] for r in rows],
        )

    emit(args, rows, text)
    return 0


async def workers(args: argparse.Namespace) -> int:
    """``workers``: every registered worker (``_private_workers``, schema revision 20) and
    every other lock owner, with host, pid, heartbeat age, the ids of the jobs it holds,
    its queue locks and its oldest lock. Owners that are not registered (Graphile Worker
    0.17 pools, dead workers whose row was deleted) show ``registered: false``."""
    schema = schema_name(args)
    statements = catalog_for(schema).inspect
    async with _reading(args) as connection:
        jobs = await connection.execute(statements.job_lock_owners.clause)
        held = {r.worker_id: r for r in jobs.all()}
        queue_locks = {
            r.worker_id: r.locked_queues
            for r in (await connection.execute(statements.queue_lock_owners.clause)).all()
        }
        registered = await _registered(connection, schema)
    rows = []
    for worker_id in sorted({*held, *queue_locks, *registered}):
        entry = registered.get(worker_id)
        metadata = (entry.metadata if entry is not None else None) or {}
        locks = held.get(worker_id)
        rows.append(
            {
                "worker_id": worker_id,
                "registered": entry is not None,
                "host": metadata.get("hostname", metadata.get("host")),
                "pid": metadata.get("pid", metadata.get("process_id")),
                "started_at": entry.started_at if entry is not None else None,
                "heartbeat_age": round(entry.heartbeat_age, 1) if entry is not None else None,
                "locked_jobs": locks.locked_jobs if locks is not None else 0,
                "job_ids": sorted(locks.job_ids) if locks is not None else [],
                "locked_queues": queue_locks.get(worker_id, 0),
                "oldest_lock": locks.oldest_lock if locks is not None else None,
            }
        )

    def text() -> str:
        if not rows:
            return "No worker is registered or holds a lock."
        return table(
            ["worker_id", "host", "pid", "heartbeat_age_s", "jobs", "job_ids", "queues"],
            [
                [
                    r["worker_id"],
                    r["host"],
                    r["pid"],
                    r["heartbeat_age"] if r["registered"] else "not registered",
                    r["locked_jobs"],
                    _id_summary(r["job_ids"]),
                    r["locked_queues"],
                ]
                for r in rows
            ],
        )

    emit(args, rows, text)
    return 0
