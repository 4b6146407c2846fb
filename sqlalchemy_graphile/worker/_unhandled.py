"""Warning about ready jobs that no running worker seems to handle.

A job whose task identifier no worker runs waits forever, silently: a typo
(``send_emial``), or workers that registered another set of tasks. Nothing in the schema
records which identifiers the running workers (Python, Node or Rust) handle, and a worker
knows only its own, so the check is a heuristic built on what the database shows. An
identifier is reported when

* this worker does not handle it, and it was not declared handled elsewhere
  (``Worker(handled_elsewhere=[...])``, ``run --handled-elsewhere``);
* it has ready jobs (not locked, attempts left, due, and not held back by a locked named
  queue), the oldest of them ready for longer than ``min_wait`` seconds;
* none of its jobs is locked by any worker right now.

A worker checks once when it starts (``min_wait`` 0: a typo shows at once, also with
``run_once()``), then every ``unhandled_jobs_interval`` seconds with ``min_wait`` equal to
that interval, so jobs another worker picks up within that time are never reported, and at
most one warning is logged per interval. ``stats`` and ``list`` use the same statement
(the query catalog's ``health.unhandled``).

Limits: a backlog of an identifier that some worker handles but that waits longer than the
interval while every such worker is busy with other tasks looks the same, and is reported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from .._aio import wait_event
from .._catalog import catalog_for

logger = logging.getLogger("sqlalchemy_graphile.worker")


@dataclass(frozen=True)
class Unhandled:
    """Ready jobs of one task identifier that no worker seems to handle."""

    identifier: str
    ready: int
    oldest_run_at: datetime


def unhandled_rows(rows: Iterable[Any]) -> list[Unhandled]:
    """The :class:`Unhandled` entries of the rows of the catalog's ``health.unhandled``
    (asyncpg or SQLAlchemy)."""
    return [Unhandled(row[0], int(row[1]), row[2]) for row in rows]


def describe(found: Sequence[Unhandled]) -> str:
    """The warning for ``found`` (not empty)."""
    jobs = sum(entry.ready for entry in found)
    names = ", ".join(f"{entry.identifier!r} ({entry.ready} jobs)" for entry in found)
    return (
        f"{jobs} ready job(s) are waiting for task identifiers that this worker does not "
        f"handle and of which no worker is running a job: {names}. Unless another worker "
        "runs them, they wait forever: check the identifiers (a typo?) and the tasks your "
        "workers register. If other workers (Node, Rust, other Python workers) run them, "
        "list them in handled_elsewhere (run --handled-elsewhere) to silence this warning"
    )


class UnhandledJobsCheck:
    """Checks at :meth:`start` and then every ``interval`` seconds until :meth:`stop`
    (only once when not ``continuous``), logging a warning when it finds something."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        schema: str,
        handled: Iterable[str],
        interval: float,
        continuous: bool,
        pool_id: str,
    ) -> None:
        self._pool = pool
        self._statement = catalog_for(schema).health.unhandled
        self._handled = sorted(set(handled))
        self._interval = interval
        self._continuous = continuous
        self._pool_id = pool_id
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Check now, in the background, and then on a timer."""
        self._task = asyncio.create_task(self._loop(), name=f"{self._pool_id} unhandled jobs")

    async def stop(self) -> None:
        """Cancel the timer; wait for a check in progress (the first one always runs)."""
        self._stopped.set()
        if self._task is not None:
            await self._task

    async def run_once(self, min_wait: float = 0.0) -> list[Unhandled]:
        """Check now; log and return what was found. Errors propagate."""
        statement = self._statement
        values = {"handled": self._handled, "min_wait": min_wait}
        rows = await self._pool.fetch(statement.numbered, *statement.arguments(values))
        found = unhandled_rows(rows)
        if found:
            logger.warning(describe(found))
        return found

    async def _loop(self) -> None:
        min_wait = 0.0
        while True:
            try:
                await self.run_once(min_wait)
            except Exception as error:
                logger.warning("checking for jobs no worker handles failed: %s", error)
            if not self._continuous or await wait_event(self._stopped, self._interval):
                return
            min_wait = self._interval
