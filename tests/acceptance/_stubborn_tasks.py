"""Tasks that ignore a forceful shutdown, for ``run --tasks tests.acceptance._stubborn_tasks``.

Each creates ``$SG_STUBBORN_DIR/started``, then keeps running for a minute: the async one
swallows every cancellation, the plain ``def`` one blocks its thread.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import ClassVar

from sqlalchemy_graphile import Task, WorkerContext

SECONDS = 60.0


def _started() -> None:
    (Path(os.environ["SG_STUBBORN_DIR"]) / "started").touch()


class SwallowsCancellation(Task):
    IDENTIFIER: ClassVar[str] = "swallows_cancellation"

    async def run(self, ctx: WorkerContext) -> None:
        _started()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SECONDS
        while loop.time() < deadline:
            try:
                await asyncio.sleep(deadline - loop.time())
            except asyncio.CancelledError:
                continue  # deliberately ignored


class BlocksItsThread(Task):
    IDENTIFIER: ClassVar[str] = "blocks_its_thread"

    def run(self, ctx: WorkerContext) -> None:
        _started()
        time.sleep(SECONDS)
