"""The ``prometheus`` extra is optional: nothing of it is imported unless metrics are asked
for, and without it the package works and metrics are a clear error. Checked in fresh
interpreters."""

from __future__ import annotations

from .._imports import run_json, without_package

_TASK = """
import asyncio, json, sys
from typing import ClassVar
from sqlalchemy_graphile import Task, Worker, WorkerContext

class Hello(Task):
    IDENTIFIER: ClassVar[str] = "hello"

    async def run(self, ctx: WorkerContext) -> None:
        pass
"""

_BLOCK = without_package("prometheus_client")


def test_a_worker_without_metrics_never_imports_prometheus_client(db_url: str, db: object) -> None:
    code = (
        _TASK
        + f"""
asyncio.run(Worker({db_url!r}, tasks=[Hello], handle_signals=False).run_once())
print(json.dumps({{"loaded": sorted(m for m in sys.modules if "prometheus" in m)}}))
"""
    )
    assert run_json(code) == {"loaded": []}


def test_without_the_extra_the_package_works_and_metrics_are_a_clear_error() -> None:
    code = (
        _BLOCK
        + _TASK
        + """
from sqlalchemy_graphile import ConfigurationError
result = {}
try:
    Worker("postgresql://nowhere/db", tasks=[Hello], metrics_port=9100)
except ConfigurationError as error:
    result["worker"] = str(error)
try:
    import sqlalchemy_graphile.prometheus
except ImportError as error:
    result["module"] = str(error)
print(json.dumps(result))
"""
    )
    hint = "pip install 'sqlalchemy-graphile[prometheus]'"
    result = run_json(code)
    assert hint in str(result["worker"])
    assert hint in str(result["module"])
