"""The changes the dashboard makes, each through :class:`~sqlalchemy_graphile.WorkerUtils`
and so through the schema's own admin functions (``reschedule_jobs``,
``permanently_fail_jobs``, ``complete_jobs``, ``remove_job``, ``force_unlock_workers``):
Node and Rust workers see exactly the effects they expect.

Those functions skip jobs a worker holds (locked less than four hours ago), so every result
says which jobs were changed and which were skipped. A bulk action on a filter works through
the matching jobs in batches of :data:`BATCH_SIZE` ids, each batch in a transaction of its
own, up to :data:`BULK_LIMIT` jobs per request, and never touches a job added after the
confirmation (its id is above the ``max_id`` the confirmation showed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ..job import Job
from ..utils import WorkerUtils
from ._filters import MAX_LIMIT, BadRequest, JobFilter, int_param, job_id_param, text_param
from ._queries import DashboardQueries

#: The actions on jobs picked by id or by filter.
JOB_ACTIONS = ("run-now", "reschedule", "retry", "fail", "complete")
#: Every action, with the words a confirmation uses for it.
ACTIONS: Mapping[str, str] = {
    "run-now": "Run now",
    "reschedule": "Reschedule",
    "retry": "Retry",
    "fail": "Mark as failed",
    "complete": "Complete",
    "remove-by-key": "Remove by key",
    "force-unlock": "Force-unlock worker",
}
#: What each action does, for the confirmation page.
EXPLANATIONS: Mapping[str, str] = {
    "run-now": "Sets run_at to now, so the jobs run as soon as a worker is free.",
    "reschedule": "Sets run_at (and the priority, if given).",
    "retry": "Resets attempts to 0 and makes the jobs runnable now: failed jobs run again "
    "with their full number of attempts.",
    "fail": "Sets attempts to max_attempts, so the jobs are never run again, and records "
    "the reason as last_error.",
    "complete": "Deletes the jobs as if they had succeeded. This cannot be undone.",
    "remove-by-key": "Deletes the job with this key. If a worker is running it, the job "
    "loses its key instead and is not retried if the attempt fails.",
    "force-unlock": "Releases every job and queue this worker id has locked. Only for "
    "workers that are dead: the interrupted attempts still count, and a live worker would "
    "run its jobs a second time.",
}
#: Ids per statement in a bulk action, and jobs per bulk request.
BATCH_SIZE = 1000
BULK_LIMIT = 10_000
#: The most worker ids one force-unlock takes.
MAX_WORKER_IDS = 100

Reading = Callable[[], AbstractAsyncContextManager[AsyncConnection]]


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """One action and its target: job ``ids``, or every job matching ``job_filter`` with
    an id up to ``max_id``, or a job ``key``, or ``worker_ids``; plus its settings."""

    action: str
    ids: tuple[int, ...] = ()
    job_filter: JobFilter | None = None
    max_id: int | None = None
    run_at: datetime | None = None
    priority: int | None = None
    reason: str | None = None
    key: str | None = None
    worker_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise BadRequest(f"unknown action {self.action!r}; one of {', '.join(ACTIONS)}")
        if self.action in JOB_ACTIONS:
            if bool(self.ids) == (self.job_filter is not None):
                raise BadRequest("choose the jobs: give their ids, or a filter")
            if len(self.ids) > MAX_LIMIT:
                raise BadRequest(f"at most {MAX_LIMIT} job ids at once; use a filter for more")
        if self.action == "reschedule" and self.run_at is None and self.priority is None:
            raise BadRequest("reschedule needs a new run_at, a new priority, or both")
        if self.action == "remove-by-key" and self.key is None:
            raise BadRequest("remove-by-key needs the job key")
        if self.action == "force-unlock" and not 1 <= len(self.worker_ids) <= MAX_WORKER_IDS:
            raise BadRequest(f"force-unlock needs 1 to {MAX_WORKER_IDS} worker ids")

    @classmethod
    def from_form(cls, action: str, form: Mapping[str, Sequence[str]]) -> ActionRequest:
        """Read an HTML form (or URL parameters): ``id`` (repeated), or ``select=filter``
        with the filter fields and ``max_id``; ``run_at`` (a ``datetime-local`` value is
        read as UTC), ``priority``, ``reason``, ``key``, ``worker`` (repeated)."""

        def one(name: str) -> str | None:
            values = form.get(name) or [""]
            return values[0] or None

        by_filter = one("select") == "filter"
        return cls(
            action=action,
            ids=() if by_filter else tuple(job_id_param(v) for v in form.get("id", ()) if v),
            job_filter=JobFilter.from_params({k: one(k) for k in form}) if by_filter else None,
            max_id=None if one("max_id") is None else job_id_param(one("max_id"), "max_id"),
            run_at=_time(one("run_at"), naive_is_utc=True),
            priority=_priority(one("priority")),
            reason=text_param(one("reason"), "reason"),
            key=text_param(one("key"), "key"),
            worker_ids=tuple(_worker_id(v) for v in form.get("worker", ()) if v),
        )

    @classmethod
    def from_json(cls, action: str, body: Mapping[str, Any]) -> ActionRequest:
        """Read an API call: ``ids`` (a list) or ``filter`` (an object with ``state``,
        ``task``, ``queue``, ``search``) and ``max_id``; ``run_at`` (ISO 8601 with a time
        zone, or ``"now"``), ``priority``, ``reason``, ``key``, ``worker_ids``."""
        ids = body.get("ids") or []
        workers = body.get("worker_ids") or []
        raw_filter = body.get("filter")
        if not isinstance(ids, list) or not isinstance(workers, list):
            raise BadRequest("ids and worker_ids must be lists")
        if raw_filter is not None and not isinstance(raw_filter, dict):
            raise BadRequest("filter must be an object")
        max_id = body.get("max_id")
        return cls(
            action=action,
            ids=tuple(job_id_param(v) for v in ids),
            job_filter=None if raw_filter is None else JobFilter.from_params(raw_filter),
            max_id=None if max_id is None else job_id_param(max_id, "max_id"),
            run_at=_time(body.get("run_at"), naive_is_utc=False),
            priority=_priority(body.get("priority")),
            reason=text_param(body.get("reason"), "reason"),
            key=text_param(body.get("key"), "key"),
            worker_ids=tuple(_worker_id(v) for v in workers),
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an action did: the jobs changed and skipped, in words too. ``more`` says a bulk
    action stopped at :data:`BULK_LIMIT` with matching jobs left."""

    action: str
    message: str
    done: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    more: bool = False
    worker_ids: list[str] = field(default_factory=list)
    ok: bool = True


_NOW = "now"


def _time(value: object, *, naive_is_utc: bool) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest("run_at must be text: an ISO 8601 time")
    if value.strip().lower() == _NOW:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadRequest(f"run_at is not an ISO 8601 time: {value!r}") from None
    if when.tzinfo is None:
        if not naive_is_utc:
            raise BadRequest("run_at needs a time zone, for example 2030-01-02T03:04:05Z")
        when = when.replace(tzinfo=UTC)
    return when


def _priority(value: object) -> int | None:
    if value is None or value == "":
        return None
    return int_param(value, "priority", minimum=-32768, maximum=32767)


def _worker_id(value: object) -> str:
    worker = text_param(value, "worker id")
    if worker is None:
        raise BadRequest("a worker id must not be empty")
    return worker


def _ids(ids: Sequence[int]) -> str:
    shown = ", ".join(map(str, ids[:20]))
    return shown + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")


def _plural(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"


class Actions:
    """Runs :class:`ActionRequest` objects with ``utils``; ``reading`` gives a connection
    for the reads an action needs (the database's time, the ids a filter matches)."""

    def __init__(self, utils: WorkerUtils, queries: DashboardQueries, reading: Reading) -> None:
        self._utils = utils
        self._queries = queries
        self._reading = reading

    async def run(self, request: ActionRequest) -> Outcome:
        """Carry out ``request``; each admin call commits on its own."""
        if request.action == "remove-by-key":
            return await self._remove_by_key(request)
        if request.action == "force-unlock":
            return await self._force_unlock(request)
        now = await self._db_now() if request.action in ("run-now", "retry") else None
        if request.job_filter is None:
            done = await self._on_jobs(request, list(request.ids), now)
            skipped = sorted(set(request.ids) - set(done))
            return self._outcome(request, sorted(done), skipped, more=False)
        return await self._on_filter(request, request.job_filter, now)

    async def _db_now(self) -> datetime:
        async with self._reading() as connection:
            return await self._queries.db_now(connection)

    async def _on_jobs(
        self, request: ActionRequest, ids: list[int], now: datetime | None
    ) -> list[int]:
        utils = self._utils
        jobs: list[Job]
        if request.action == "run-now":
            jobs = await utils.reschedule_jobs(ids, run_at=now)
        elif request.action == "retry":
            jobs = await utils.reschedule_jobs(ids, run_at=now, attempts=0)
        elif request.action == "reschedule":
            jobs = await utils.reschedule_jobs(
                ids, run_at=request.run_at, priority=request.priority
            )
        elif request.action == "fail":
            jobs = await utils.permanently_fail_jobs(ids, reason=request.reason)
        else:
            jobs = await utils.complete_jobs(ids)
        return [job.id for job in jobs]

    async def _on_filter(
        self, request: ActionRequest, job_filter: JobFilter, now: datetime | None
    ) -> Outcome:
        max_id = request.max_id
        if max_id is None:
            async with self._reading() as connection:
                _, max_id = await self._queries.count_matching(connection, job_filter)
        done: list[int] = []
        skipped: list[int] = []
        after_id = 0
        more = False
        while max_id is not None:
            room = BULK_LIMIT - len(done) - len(skipped)
            if room <= 0:
                async with self._reading() as connection:
                    more = bool(
                        await self._queries.matching_ids(
                            connection, job_filter, after_id=after_id, max_id=max_id, limit=1
                        )
                    )
                break
            async with self._reading() as connection:
                ids = await self._queries.matching_ids(
                    connection,
                    job_filter,
                    after_id=after_id,
                    max_id=max_id,
                    limit=min(BATCH_SIZE, room),
                )
            if not ids:
                break
            changed = await self._on_jobs(request, ids, now)
            done += changed
            skipped += sorted(set(ids) - set(changed))
            after_id = ids[-1]
        return self._outcome(request, sorted(done), skipped, more=more)

    def _outcome(
        self, request: ActionRequest, done: list[int], skipped: list[int], *, more: bool
    ) -> Outcome:
        verb = {
            "run-now": "Made {n} runnable now",
            "retry": "Retried {n}: attempts reset to 0, runnable now",
            "fail": "Marked {n} as failed",
            "complete": "Completed (deleted) {n}",
            "reschedule": "Rescheduled {n}",
        }[request.action].format(n=_plural(len(done)))
        if request.action == "reschedule":
            changes = []
            if request.run_at is not None:
                changes.append(f"to run at {request.run_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")
            if request.priority is not None:
                changes.append(f"with priority {request.priority}")
            verb += " " + " and ".join(changes)
        lines = [verb + (f": {_ids(done)}." if done else ".")]
        if skipped:
            lines.append(
                f"Skipped {_plural(len(skipped))} that a worker holds or that no longer "
                f"exist: {_ids(skipped)}."
            )
        if more:
            lines.append(
                f"Stopped after {BULK_LIMIT} jobs; more match the filter: run the action again."
            )
        return Outcome(
            request.action, " ".join(lines), done, skipped, more=more, ok=bool(done) or not skipped
        )

    async def _remove_by_key(self, request: ActionRequest) -> Outcome:
        assert request.key is not None
        job = await self._utils.remove_job(request.key)
        if job is None:
            return Outcome(request.action, f"No job has the key {request.key!r}.", ok=False)
        if job.locked_at is not None:
            return Outcome(
                request.action,
                f"Job {job.id} is running, so it was not removed: it lost its key "
                f"{request.key!r} and will not be retried if this attempt fails.",
                done=[job.id],
            )
        return Outcome(
            request.action, f"Removed job {job.id} (key {request.key!r}).", done=[job.id]
        )

    async def _force_unlock(self, request: ActionRequest) -> Outcome:
        workers = list(request.worker_ids)
        async with self._reading() as connection:
            holders = {
                h.worker_id: h
                for h in await self._queries.lock_holders(connection)
                if h.worker_id in workers
            }
        await self._utils.force_unlock_workers(workers)
        jobs = sum(h.jobs for h in holders.values())
        queues = sum(h.queues for h in holders.values())
        return Outcome(
            request.action,
            f"Released the locks of {', '.join(map(repr, workers))}: {_plural(jobs)} and "
            f"{queues} queue{'' if queues == 1 else 's'} were locked.",
            worker_ids=workers,
        )
