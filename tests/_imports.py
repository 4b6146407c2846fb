"""Which SQLAlchemy and Alembic modules a fresh interpreter loads for a piece of code."""

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
