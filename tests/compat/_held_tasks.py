"""Tasks for a worker process started with our command line by the compatibility tests
(``sqlalchemy-graphile run --tasks tests.compat._held_tasks:HeldForever``).

``held`` logs its start in ``compat.runs`` of ``$DATABASE_URL``, then waits until the
process is killed, so that the job stays locked by the dead process's pool id.
"""

from __future__ import annotations

import asyncio
import os
from typing import ClassVar

from sqlalchemy_graphile import Task, WorkerContext
from tests.compat._support import RunLog


class HeldForever(Task):
    IDENTIFIER: ClassVar[str] = "held"
    a: int = 0

    async def run(self, ctx: WorkerContext) -> None:
        async with RunLog(os.environ["DATABASE_URL"]).record(ctx, self.model_dump_json()):
            await asyncio.Event().wait()
