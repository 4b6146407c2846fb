"""Tasks for the tests through a pooler: a parent that adds children from inside its job
(``ctx.add_job``), and the child. Loadable by ``run --tasks`` too."""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy_graphile import Task, WorkerContext

from ._worker_support import Recorder


class Child(Task):
    IDENTIFIER: ClassVar[str] = "pooled_child"
    parent: int
    n: int

    async def run(self, ctx: WorkerContext) -> None:
        rec = ctx.get_ext(Recorder)
        if rec is not None:
            rec.calls.append(("pooled_child", (self.parent, self.n)))


class Spawn(Task):
    """Adds ``children`` jobs, one ``ctx.add_job`` each."""

    IDENTIFIER: ClassVar[str] = "pooled_spawn"
    parent: int
    children: int

    async def run(self, ctx: WorkerContext) -> None:
        for n in range(self.children):
            await ctx.add_job(Child(parent=self.parent, n=n))
