"""Code run in a fresh interpreter: which SQLAlchemy and Alembic modules it loads, and how it
behaves when an optional package is missing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_REPORT = """
import json, sys
names = [m for m in sys.modules if m.partition(".")[0] in ("sqlalchemy", "alembic")]
print(json.dumps(sorted(names)))
"""


def loaded_after(code: str) -> list[str]:
    """The SQLAlchemy and Alembic modules a fresh interpreter has loaded after ``code``
    (run from the repository root; the code must succeed)."""
    done = subprocess.run(
        [sys.executable, "-c", code + _REPORT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def without_package(package: str) -> str:
    """Code that makes every import of ``package`` (and its submodules) fail as if it were
    not installed; put it first in the code given to :func:`run_json`."""
    return f"""
import sys

class _Missing:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == {package!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _Missing())
"""


def run_json(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter from the repository root (it must succeed) and
    return the JSON object on the last line it prints."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result
