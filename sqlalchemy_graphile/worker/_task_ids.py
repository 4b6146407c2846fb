"""Task identifiers to the integer ids the fetch filters on.

The worker registers its identifiers in ``_private_tasks`` before its first fetch and keeps
the ids for the rest of its run. (Deleting task rows with ``cleanup(GC_TASK_IDENTIFIERS)``
while workers run is therefore unsafe, as in Graphile Worker.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from ._retry import with_retries
from ._sql import Statements, id_list


@dataclass(frozen=True, slots=True)
class TaskIds:
    """The ids of the worker's task identifiers."""

    ids: str
    """The ids as the fetch statement takes them (:func:`id_list`)."""
    identifier_by_id: dict[int, str]


class TaskIdentifiers:
    """Resolves and caches the ids of ``identifiers``; concurrent callers share one lookup.
    A failed lookup is not cached, so the next fetch tries again."""

    def __init__(self, statements: Statements, identifiers: Sequence[str]) -> None:
        self._statements = statements
        self._identifiers = list(identifiers)
        self._resolved: TaskIds | None = None
        self._lock = asyncio.Lock()

    async def resolve(self, pool: asyncpg.Pool) -> TaskIds:
        """The ids, registering the identifiers on first use (statements retried per
        :func:`with_retries`; errors propagate)."""
        if self._resolved is not None:
            return self._resolved
        async with self._lock:
            if self._resolved is None:
                self._resolved = await with_retries(lambda: self._lookup(pool))
            return self._resolved

    async def _lookup(self, pool: asyncpg.Pool) -> TaskIds:
        async with pool.acquire() as connection:
            await connection.execute(self._statements.register_tasks, self._identifiers)
            rows = await connection.fetch(self._statements.select_task_ids, self._identifiers)
        by_id = {row["id"]: row["identifier"] for row in rows}
        return TaskIds(id_list(sorted(by_id)), by_id)
