"""The cron store on an asyncpg pool, for the worker's cron scheduler: every call is one
statement on a connection of the pool, a transaction of its own."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from .._catalog import Catalog
from ..events import CronJob
from ._cron import KnownCrontab, cron_specs_json


class AsyncpgCronStore:
    """A :class:`~sqlalchemy_graphile._store._cron.CronStore` on ``pool`` for the schema of
    ``catalog``. Database errors propagate as asyncpg raises them."""

    def __init__(self, pool: asyncpg.Pool, catalog: Catalog) -> None:
        self._pool = pool
        self._statements = catalog.cron

    async def known_crontabs(self, identifiers: Sequence[str]) -> dict[str, KnownCrontab]:
        statement = self._statements.known
        rows = await self._pool.fetch(statement.numbered, list(identifiers))
        return {row[0]: KnownCrontab(row[0], row[1], row[2]) for row in rows}

    async def remember(self, identifiers: Sequence[str], known_since: datetime) -> None:
        statement = self._statements.remember
        values = {"identifiers": list(identifiers), "known_since": known_since}
        await self._pool.execute(statement.numbered, *statement.arguments(values))

    async def schedule(self, jobs: Sequence[CronJob], tick: datetime) -> list[int]:
        if not jobs:
            return []
        statement = self._statements.schedule
        values = {"specs": cron_specs_json(jobs), "tick": tick}
        rows = await self._pool.fetch(statement.numbered, *statement.arguments(values))
        return [int(row[0]) for row in rows]
