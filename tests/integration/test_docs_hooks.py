"""docs/hooks.md: its example, written out and run as the page says, against PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg

from .._doc_blocks import blocks, project_files
from .._imports import ROOT
from .._user_projects import write_files

PAGE = ROOT / "docs" / "hooks.md"


def test_the_example_prints_what_the_page_says(
    db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    write_files(tmp_path, project_files(PAGE))
    done = subprocess.run(
        [sys.executable, "hooks_example/app.py"],
        cwd=tmp_path,
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    (shown,) = [b.text for b in blocks(PAGE) if b.language == "text"]
    # Job ids and durations differ from run to run.
    pattern = re.escape(shown.strip())
    pattern = pattern.replace(r"job\ 1\ ", r"job\ \d+\ ").replace(r"0\.000", r"\d+\.\d{3}")
    assert re.fullmatch(pattern, done.stdout.strip()), done.stdout
    (remaining,) = db.execute("select count(*) from graphile_worker._private_jobs").fetchone() or (
        None,
    )
    assert remaining == 0
