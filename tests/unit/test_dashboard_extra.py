"""The dashboard is an optional extra: without Starlette, Jinja2 and uvicorn the package
imports and works, and the dashboard says which extra to install.

Each check runs in a fresh interpreter, since this test process has the extra installed.
"""

from __future__ import annotations

import json
import subprocess
import sys

from .._imports import ROOT

# Makes the dashboard's dependencies unimportable, as if the extra were not installed.
_WITHOUT_EXTRA = """
import sys

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("starlette", "jinja2", "uvicorn"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


def _run(code: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_the_package_imports_none_of_the_extra() -> None:
    result = _run(
        """
import json, sys
import sqlalchemy_graphile
from sqlalchemy_graphile import JobHelpers, WorkerUtils
import sqlalchemy_graphile.cli._main
loaded = [m for m in sys.modules if m.partition(".")[0] in ("starlette", "jinja2", "uvicorn")]
print(json.dumps({"loaded": loaded}))
"""
    )
    assert result == {"loaded": []}


def test_without_the_extra_the_dashboard_names_it() -> None:
    result = _run(
        _WITHOUT_EXTRA
        + """
import json
import sqlalchemy_graphile
from sqlalchemy_graphile import Worker, WorkerUtils
try:
    import sqlalchemy_graphile.dashboard
except ImportError as error:
    message = str(error)
else:
    message = "imported"
from sqlalchemy_graphile.cli import main
status = main(["-c", "postgresql://nobody@127.0.0.1:1/x", "dashboard"])
print(json.dumps({"message": message, "status": status}))
"""
    )
    assert result["status"] == 1
    assert "pip install 'sqlalchemy-graphile[dashboard]'" in str(result["message"])
