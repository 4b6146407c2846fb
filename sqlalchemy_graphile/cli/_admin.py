"""Commands that change jobs: ``add``, ``complete``, ``fail``, ``reschedule``, ``remove``,
``force-unlock``, ``sweep-stale-workers`` and ``cleanup``.

Each one is a single call to :class:`~sqlalchemy_graphile.WorkerUtils`, which runs the
schema's SQL function in a transaction of its own and commits it. Arguments are checked
before any SQL runs.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from .._recovery import DEFAULT_RESILIENT_FLAGS
from ..errors import ConfigurationError, InvalidPayloadError
from ..hooks import WorkerPlugin
from ..job import Job
from ..job_spec import JobKeyMode, JobSpec, check_task_identifier
from ..utils import WorkerUtils
from ._common import (
    CLEANUP_TASKS,
    CLI_APPLICATION_NAME,
    database_url,
    emit,
    open_engine,
    parse_time,
    schema_name,
    table,
)
from ._loader import load_plugins


@asynccontextmanager
async def _utils(
    args: argparse.Namespace, plugins: Sequence[WorkerPlugin] = ()
) -> AsyncIterator[WorkerUtils]:
    schema = schema_name(args)
    async with open_engine(database_url(args), CLI_APPLICATION_NAME) as engine:
        yield WorkerUtils(engine, schema=schema, plugins=plugins)


def _payload(args: argparse.Namespace) -> Any:
    if args.payload_file is not None:
        try:
            text = Path(args.payload_file).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigurationError(f"cannot read --payload-file: {error}") from None
    elif args.payload is not None:
        text = args.payload
    else:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidPayloadError(f"the payload is not valid JSON: {error}") from None


async def add(args: argparse.Namespace) -> int:
    """``add IDENTIFIER``: add one job; prints it."""
    identifier = check_task_identifier(args.identifier)
    payload = _payload(args)
    spec = JobSpec(
        queue_name=args.queue,
        run_at=parse_time(args.run_at) if args.run_at is not None else None,
        max_attempts=args.max_attempts,
        priority=args.priority,
        flags=tuple(args.flags) if args.flags else None,
        job_key=args.key,
        job_key_mode=JobKeyMode(args.job_key_mode) if args.job_key_mode else None,
    )
    plugins = load_plugins(args.plugins)
    async with _utils(args, plugins) as utils:
        job = await utils.add_raw_job(identifier, payload, spec)
    emit(args, job, lambda: f"Added job {job.id} ({job.task_identifier}), runs at {job.run_at}")
    return 0


def _report_jobs(args: argparse.Namespace, verb: str, asked: list[int], jobs: list[Job]) -> int:
    done = {job.id for job in jobs}
    skipped = [i for i in asked if i not in done]

    def text() -> str:
        lines = [
            f"{verb} {len(jobs)} job(s)"
            + (f": {', '.join(map(str, sorted(done)))}" if done else "")
        ]
        if skipped:
            lines.append(
                f"Skipped (no such job, or locked by a worker): {', '.join(map(str, skipped))}"
            )
        return "\n".join(lines)

    emit(args, {"jobs": jobs, "skipped": skipped}, text)
    return 0


async def complete(args: argparse.Namespace) -> int:
    """``complete IDS``: delete the jobs as done; locked ones are skipped."""
    async with _utils(args) as utils:
        jobs = await utils.complete_jobs(args.job_ids)
    return _report_jobs(args, "Completed", args.job_ids, jobs)


async def fail(args: argparse.Namespace) -> int:
    """``fail IDS [--reason]``: fail the jobs permanently; locked ones are skipped."""
    async with _utils(args) as utils:
        jobs = await utils.permanently_fail_jobs(args.job_ids, reason=args.reason)
    return _report_jobs(args, "Failed", args.job_ids, jobs)


async def reschedule(args: argparse.Namespace) -> int:
    """``reschedule IDS (--now | --run-at | --priority | --attempts | --max-attempts)``."""
    run_at = parse_time("now" if args.now else args.run_at) if args.now or args.run_at else None
    async with _utils(args) as utils:
        jobs = await utils.reschedule_jobs(
            args.job_ids,
            run_at=run_at,
            priority=args.priority,
            attempts=args.attempts,
            max_attempts=args.max_attempts,
        )
    return _report_jobs(args, "Rescheduled", args.job_ids, jobs)


async def remove(args: argparse.Namespace) -> int:
    """``remove KEY``: delete the job with that key, or take the key from a running one."""
    async with _utils(args) as utils:
        job = await utils.remove_job(args.key)
    if job is None:
        raise ConfigurationError(f"there is no job with key {args.key!r}")

    def text() -> str:
        if job.locked_at is not None:
            return f"Job {job.id} is running: it lost its key and will not be retried"
        return f"Removed job {job.id}"

    emit(args, job, text)
    return 0


async def force_unlock(args: argparse.Namespace) -> int:
    """``force-unlock WORKER_IDS``: release the jobs and queues those workers hold."""
    async with _utils(args) as utils:
        await utils.force_unlock_workers(args.worker_ids)
    emit(
        args,
        {"worker_ids": args.worker_ids},
        lambda: f"Released the locks of {', '.join(args.worker_ids)}",
    )
    return 0


async def sweep_stale_workers(args: argparse.Namespace) -> int:
    """``sweep-stale-workers [--dry-run] ...``: one recovery sweep; prints each dead worker
    with the jobs it held (given back, or that would be with ``--dry-run``)."""
    async with _utils(args) as utils:
        result = await utils.sweep_stale_workers(
            sweep_threshold=args.sweep_threshold,
            recovery_delay=args.recovery_delay,
            resilient_flags=(
                args.resilient_flags
                if args.resilient_flags is not None
                else DEFAULT_RESILIENT_FLAGS
            ),
            resilient_threshold_multiplier=args.resilient_threshold_multiplier,
            recover_unregistered_locks=args.recover_unregistered_locks,
            dry_run=args.dry_run,
        )
    owners = [*result.dead_workers, *result.orphans]
    jobs_of = {owner: [job.id for job in result.jobs if job.locked_by == owner] for owner in owners}
    document = {
        "swept": result.swept,
        "dry_run": result.dry_run,
        "dead_workers": list(result.dead_workers),
        "orphans": list(result.orphans),
        "jobs": {owner: ids for owner, ids in jobs_of.items()},
        "queues_unlocked": result.queues,
    }

    def text() -> str:
        if not result.swept:
            return "Another sweep is running; nothing was done"
        if not owners:
            return "No dead workers"
        verb = "Would recover" if result.dry_run else "Recovered"
        rows = [
            [
                owner,
                "unregistered" if owner in result.orphans else "stale heartbeat",
                len(ids),
                ", ".join(map(str, ids)) or None,
            ]
            for owner, ids in jobs_of.items()
        ]
        summary = (
            f"{verb} {len(result.jobs)} job(s) and {result.queues} queue lock(s) "
            f"from {len(owners)} worker(s)"
        )
        return table(["worker", "why", "jobs", "job ids"], rows) + "\n" + summary

    emit(args, document, text)
    return 0


async def cleanup(args: argparse.Namespace) -> int:
    """``cleanup [TASK ...]``: run the named cleanup tasks (all three by default), in their
    fixed order; prints how many rows each deleted."""
    chosen = args.tasks or CLEANUP_TASKS
    names = {theirs: ours for ours, theirs in CLEANUP_TASKS.items() if ours in chosen}
    async with _utils(args) as utils:
        counts = await utils.cleanup(tasks=list(names))
    deleted = {names[name]: count for name, count in counts.items()}
    emit(
        args,
        deleted,
        lambda: table(["cleanup task", "rows deleted"], [[t, n] for t, n in deleted.items()]),
    )
    return 0
