"""docs/hooks.md and docs/tracing.md: each page's example, written out and run as the page
says against PostgreSQL, prints what the page shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from .._doc_blocks import blocks, project_files
from .._imports import ROOT
from .._user_projects import write_files

PAGES = {"hooks": "hooks_example/app.py", "tracing": "tracing_example/app.py"}

# What differs from run to run: job ids and durations.
_VARYING = ((r"job\ 1\ ", r"job\ \d+\ "), (r"0\.000", r"\d+\.\d{3}"))


@pytest.mark.parametrize("page", sorted(PAGES))
def test_the_example_prints_what_the_page_says(
    page: str, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    path = ROOT / "docs" / f"{page}.md"
    write_files(tmp_path, project_files(path))
    done = subprocess.run(
        [sys.executable, PAGES[page]],
        cwd=tmp_path,
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    (shown,) = [b.text for b in blocks(path) if b.language == "text"]
    pattern = re.escape(shown.strip())
    for fixed, varying in _VARYING:
        pattern = pattern.replace(fixed, varying)
    assert re.fullmatch(pattern, done.stdout.strip()), done.stdout
    (remaining,) = db.execute("select count(*) from graphile_worker._private_jobs").fetchone() or (
        None,
    )
    assert remaining == 0
