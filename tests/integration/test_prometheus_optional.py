"""The ``prometheus`` extra is optional: nothing of it is imported unless metrics are asked
for, and without it the package works and metrics are a clear error. Checked in fresh
interpreters."""

from __future__ import annotations

import json
import subprocess
import sys

from .._imports import ROOT

_TASK = """
import asyncio, json, sys
from typing import ClassVar
from sqlalchemy_graphile import Task, Worker, WorkerContext

class Hello(Task):
    IDENTIFIER: ClassVar[str] = "hello"

    async def run(self, ctx: WorkerContext) -> None:
        pass
"""

_BLOCK = """
import sys

class _Missing:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "prometheus_client":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _Missing())
"""


def _run(code: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_a_worker_without_metrics_never_imports_prometheus_client(db_url: str, db: object) -> None:
    code = (
        _TASK
        + f"""
asyncio.run(Worker({db_url!r}, tasks=[Hello], handle_signals=False).run_once())
print(json.dumps({{"loaded": sorted(m for m in sys.modules if "prometheus" in m)}}))
"""
    )
    assert _run(code) == {"loaded": []}


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
    result = _run(code)
    assert hint in str(result["worker"])
    assert hint in str(result["module"])
