"""``examples/metrics_in_app.py`` run as a real process: the application serves the
worker's and the queue's metrics on its own route, scraped over HTTP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg

from .._processes import reaped, terminate, wait_until
from ._worker_support import add
from .test_prometheus_metrics import parse, scrape_url

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "metrics_in_app.py"


def test_the_application_serves_worker_and_queue_metrics(
    db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    log_path = tmp_path / "app.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLE), "0"],
            env={**os.environ, "DATABASE_URL": db_url},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    serving = re.compile(r"serving on (http://\S+/metrics)")
    with reaped(process):
        wait_until(lambda: serving.search(log_path.read_text()), process, log_path)
        match = serving.search(log_path.read_text())
        assert match is not None
        url = match.group(1)
        add(db, "report", '{"name": "daily"}')
        add(db, "report", '{"name": "later"}', run_at="2999-01-01T00:00:00Z")
        completed = (
            "graphile_worker_jobs_completed_total",
            frozenset({"task": "report", "queue": ""}.items()),
        )
        wait_until(lambda: parse(scrape_url(url)).get(completed) == 1, process, log_path)
        samples = parse(scrape_url(url))
        scheduled = frozenset({"task": "report", "queue": "", "state": "scheduled"}.items())
        assert samples[("graphile_worker_queue_jobs", scheduled)] == 1
        assert scrape_url(url.removesuffix("metrics")) == "the application\n"
        assert terminate(process, log_path) == 0, log_path.read_text()
