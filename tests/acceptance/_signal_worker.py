"""A worker process for the signal tests: ``python _signal_worker.py URL DIR``.

Its one task creates ``DIR/started``, then waits until ``DIR/release`` exists.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import ClassVar

from sqlalchemy_graphile import Task, Worker, WorkerContext


class Slow(Task):
    IDENTIFIER: ClassVar[str] = "slow"

    async def run(self, ctx: WorkerContext) -> None:
        folder = ctx.get_ext(Path)
        assert folder is not None
        (folder / "started").touch()
        # The test process creates the file; there is no event to wait on across processes.
        while not (folder / "release").exists():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def main() -> None:
    url, folder = sys.argv[1], Path(sys.argv[2])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    worker = Worker(
        url,
        tasks=[Slow],
        extensions=[folder],
        poll_interval=0.1,
        graceful_shutdown_abort_timeout=60.0,
    )
    asyncio.run(worker.run())


if __name__ == "__main__":
    main()
