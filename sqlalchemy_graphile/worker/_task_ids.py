"""Task identifiers to the integer ids the fetch filters on.

The worker registers its identifiers in ``_private_tasks`` before its first fetch and keeps
the ids for the rest of its run. (Deleting task rows with ``cleanup(GC_TASK_IDENTIFIERS)``
while workers run is therefore unsafe, as in Graphile Worker.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .._store import JobStore, TaskIds
from ._retry import with_retries


class TaskIdentifiers:
    """Resolves and caches the ids of ``identifiers``; concurrent callers share one lookup.
    A failed lookup is not cached, so the next fetch tries again."""

    def __init__(self, store: JobStore, identifiers: Sequence[str]) -> None:
        self._store = store
        self._identifiers = list(identifiers)
        self._resolved: TaskIds | None = None
        self._lock = asyncio.Lock()

    async def resolve(self) -> TaskIds:
        """The ids, registering the identifiers on first use (statements retried per
        :func:`with_retries`; errors propagate)."""
        if self._resolved is not None:
            return self._resolved
        async with self._lock:
            if self._resolved is None:
                self._resolved = await with_retries(lambda: self._store.task_ids(self._identifiers))
            return self._resolved
