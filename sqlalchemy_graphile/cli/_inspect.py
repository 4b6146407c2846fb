"""Read-only commands: ``list``, ``show``, ``stats``, ``queues`` and ``workers``.

They read the ``jobs`` view and the private tables through :mod:`sqlalchemy_graphile.models`
in one read-only transaction of their own, and never lock anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import models
from .._catalog import catalog_for
from .._identifiers import DEFAULT_SCHEMA
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
_COUNTED_STATES = ("ready", "scheduled", "locked", "failed")


@asynccontextmanager
async def _reading(args: argparse.Namespace) -> AsyncIterator[AsyncConnection]:
    schema = schema_name(args)
    async with open_engine(database_url(args), CLI_APPLICATION_NAME) as engine:
        translated = engine.execution_options(schema_translate_map={DEFAULT_SCHEMA: schema})
        async with translated.connect() as connection:
            await connection.exec_driver_sql("set transaction read only")
            yield connection


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


def _state_filter(
    state: str, now: ColumnElement[Any], unhandled: Sequence[str] = ()
) -> ColumnElement[bool]:
    job = models.JobView
    unlocked = job.locked_at.is_(None)
    if state == "ready":
        return and_(unlocked, job.attempts < job.max_attempts, job.run_at <= now)
    if state == "unhandled":
        ready = _state_filter("ready", now)
        return and_(ready, job.task_identifier.in_(unhandled)) if unhandled else false()
    if state == "scheduled":
        return and_(unlocked, job.attempts < job.max_attempts, job.run_at > now)
    if state == "locked":
        return job.locked_at.is_not(None)
    if state == "failed":
        return and_(unlocked, job.attempts >= job.max_attempts)
    return true()


def _state_of(row: Any, now: Any, unhandled: Collection[str] = ()) -> str:
    if row.locked_at is not None:
        return "locked"
    if row.attempts >= row.max_attempts:
        return "failed"
    if row.run_at > now:
        return "scheduled"
    return "unhandled" if row.task_identifier in unhandled else "ready"


async def list_jobs(args: argparse.Namespace) -> int:
    """``list``: jobs in run order (priority, run_at, id), filtered by state, task and queue.
    Ready jobs of tasks no worker seems to handle show as ``unhandled``."""
    job = models.JobView
    view = job.__table__
    async with _reading(args) as connection:
        unhandled = [entry.identifier for entry in await _unhandled(connection, args)]
        query = select(view, func.now().label("db_now")).where(
            _state_filter(args.state, func.now(), unhandled)
        )
        if args.identifier is not None:
            query = query.where(job.task_identifier == args.identifier)
        if args.queue is not None:
            query = query.where(job.queue_name == args.queue)
        query = query.order_by(job.priority, job.run_at, job.id)
        rows = (await connection.execute(query.limit(args.limit).offset(args.offset))).all()
    jobs = [
        {
            **{c.name: getattr(r, c.name) for c in view.columns},
            "state": _state_of(r, r.db_now, unhandled),
        }
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
    private = models.PrivateJob
    query = (
        select(
            private.__table__,
            models.TaskIdentifier.identifier.label("task_identifier"),
            models.JobQueue.queue_name,
            func.now().label("db_now"),
        )
        .join(models.TaskIdentifier, models.TaskIdentifier.id == private.task_id)
        .outerjoin(models.JobQueue, models.JobQueue.id == private.job_queue_id)
        .where(private.id == args.job_id)
    )
    async with _reading(args) as connection:
        row = (await connection.execute(query)).one_or_none()
    if row is None:
        raise ConfigurationError(f"there is no job with id {args.job_id}")
    job = {
        "id": row.id,
        "task_identifier": row.task_identifier,
        "queue_name": row.queue_name,
        "state": _state_of(row, row.db_now),
        **{c: getattr(row, c) for c in _SHOWN_COLUMNS},
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
    job = models.JobView
    now = func.now()
    counts = [
        func.count().filter(_state_filter(state, now)).label(state) for state in _COUNTED_STATES
    ]
    totals_query = select(func.count().label("total"), *counts)
    per_queue_query = (
        select(job.queue_name, func.count().label("total"), *counts)
        .where(job.queue_name.is_not(None))
        .group_by(job.queue_name)
        .order_by(job.queue_name)
    )
    async with _reading(args) as connection:
        totals = (await connection.execute(totals_query.select_from(job))).one()._asdict()
        per_queue = [r._asdict() for r in (await connection.execute(per_queue_query)).all()]
        unhandled = await _unhandled(connection, args)
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
                table(["queue", "total", *_COUNTED_STATES], [list(q.values()) for q in per_queue]),
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
    queue, private = models.JobQueue, models.PrivateJob
    query = (
        select(
            queue.queue_name,
            queue.locked_by,
            queue.locked_at,
            func.count(private.id).label("jobs"),
        )
        .outerjoin(private, private.job_queue_id == queue.id)
        .group_by(queue.id)
        .order_by(queue.queue_name)
    )
    async with _reading(args) as connection:
        rows = [r._asdict() for r in (await connection.execute(query)).all()]

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
    private, queue = models.PrivateJob, models.JobQueue
    jobs = (
        select(
            private.locked_by.label("worker_id"),
            func.count().label("locked_jobs"),
            func.array_agg(private.id).label("job_ids"),
            func.min(private.locked_at).label("oldest_lock"),
        )
        .where(private.locked_by.is_not(None))
        .group_by(private.locked_by)
    )
    queues_ = (
        select(queue.locked_by.label("worker_id"), func.count().label("locked_queues"))
        .where(queue.locked_by.is_not(None))
        .group_by(queue.locked_by)
    )
    schema = schema_name(args)
    async with _reading(args) as connection:
        held = {r.worker_id: r for r in (await connection.execute(jobs)).all()}
        queue_locks = {
            r.worker_id: r.locked_queues for r in (await connection.execute(queues_)).all()
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
