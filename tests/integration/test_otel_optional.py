"""The ``otel`` extra is optional: nothing of OpenTelemetry is imported unless
``sqlalchemy_graphile.otel`` is, a worker runs jobs carrying ``_trace`` without it, and
without the extra that module is a clear error. Checked in fresh interpreters."""

from __future__ import annotations

import json

import psycopg

from .._imports import run_json, without_package
from ._worker_support import add

_BLOCK = without_package("opentelemetry")


def test_adding_and_running_jobs_never_imports_opentelemetry(
    db_url: str, db: psycopg.Connection
) -> None:
    add(
        db, "hello", json.dumps({"_trace": {"flags": 1, "trace_id": "1" * 32, "span_id": "2" * 16}})
    )
    code = f"""
import asyncio, json, sys
from typing import ClassVar
from sqlalchemy_graphile import Task, Worker, WorkerContext, WorkerPlugin, WorkerUtils

ran = []

class Hello(Task):
    IDENTIFIER: ClassVar[str] = "hello"

    async def run(self, ctx: WorkerContext) -> None:
        ran.append(self.model_dump())

class Noop(WorkerPlugin):
    def before_job_run(self, run):
        pass

async def main():
    async with WorkerUtils({db_url!r}, plugins=[WorkerPlugin()]) as utils:
        await utils.add_job(Hello())
    await Worker({db_url!r}, tasks=[Hello], plugins=[Noop()], handle_signals=False).run_once()

asyncio.run(main())
loaded = sorted(m for m in sys.modules if m.partition(".")[0] == "opentelemetry")
print(json.dumps({{"ran": ran, "loaded": loaded}}))
"""
    assert run_json(code) == {"ran": [{}, {}], "loaded": []}


def test_without_the_extra_the_module_is_a_clear_error() -> None:
    code = (
        _BLOCK
        + """
import json
import sqlalchemy_graphile
result = {}
try:
    import sqlalchemy_graphile.otel
except ImportError as error:
    result["module"] = str(error)
print(json.dumps(result))
"""
    )
    assert "pip install 'sqlalchemy-graphile[otel]'" in str(run_json(code)["module"])
