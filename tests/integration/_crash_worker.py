"""A worker process to kill: ``python -m tests.integration._crash_worker URL``.

It runs the task ``hold`` with recovery's fast settings (heartbeat every 0.2 s, threshold
1 s). The task records its start in the table ``crash_starts`` (job id, attempt, pid) and
then blocks until the process is killed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import ClassVar

import psycopg

from sqlalchemy_graphile import Task, Worker, WorkerContext

#: The settings both the process and the tests' rescuing worker use.
HEARTBEAT_INTERVAL = 0.2
SWEEP_THRESHOLD = 1.0

CREATE_STARTS = (
    "create table if not exists crash_starts"
    " (job_id bigint, attempt int, pid int, at timestamptz default clock_timestamp())"
)


class Hold(Task):
    IDENTIFIER: ClassVar[str] = "hold"
    name: str = ""

    def run(self, ctx: WorkerContext) -> None:
        with psycopg.connect(os.environ["CRASH_WORKER_URL"], autocommit=True) as db:
            db.execute(
                "insert into crash_starts (job_id, attempt, pid) values (%s, %s, %s)",
                (ctx.job.id, ctx.job.attempts, os.getpid()),
            )
        while True:  # until SIGKILL: nothing to wait on
            time.sleep(0.05)


def main() -> None:
    url = sys.argv[1]
    os.environ["CRASH_WORKER_URL"] = url
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    worker = Worker(
        url,
        tasks=[Hold],
        poll_interval=0.1,
        heartbeat_interval=HEARTBEAT_INTERVAL,
        sweep_threshold=SWEEP_THRESHOLD,
        sweep_interval=None,
    )
    asyncio.run(worker.run())


if __name__ == "__main__":
    main()
