"""Tasks run both by a worker process and by ``run_jobs`` in
``test_testing_run_jobs_agreement``: each appends what it did to the file named by
``$RAN_LOG``, and some fail, add follow-up jobs or fail batch items."""

from __future__ import annotations

import json
import os
from typing import ClassVar

from sqlalchemy_graphile import BatchTask, BatchTaskResult, JobSpec, Task, WorkerContext


def record(ctx: WorkerContext, what: object) -> None:
    line = {"task": ctx.job.task_identifier, "attempt": ctx.job.attempts, "what": what}
    with open(os.environ["RAN_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(line, sort_keys=True) + "\n")


class Deliver(Task):
    IDENTIFIER: ClassVar[str] = "agree_deliver"
    to: str

    async def run(self, ctx: WorkerContext) -> None:
        record(ctx, self.to)
        if self.to.startswith("bounce"):
            raise ValueError(f"{self.to} bounced")


class Register(Task):
    IDENTIFIER: ClassVar[str] = "agree_register"
    email: str

    async def run(self, ctx: WorkerContext) -> None:
        record(ctx, self.email)
        await ctx.add_job(Deliver(to=self.email), JobSpec(queue_name="mail"))
        await ctx.add_batch_job([Tally(event=f"registered {self.email}")], JobSpec(job_key="tally"))


class Tally(BatchTask):
    IDENTIFIER: ClassVar[str] = "agree_tally"
    event: str

    @classmethod
    async def run_batch(cls, items: list[Tally], ctx: WorkerContext) -> BatchTaskResult:
        record(ctx, [item.event for item in items])
        return BatchTaskResult(
            {i: f"refused {item.event}" for i, item in enumerate(items) if "bad" in item.event}
        )


class Thumbnail(Task):
    IDENTIFIER: ClassVar[str] = "agree_thumbnail"
    image: int

    def run(self, ctx: WorkerContext) -> None:
        record(ctx, self.image)
