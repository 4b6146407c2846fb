"""``--soak N``: does a long-running worker's memory stay flat?

One worker process runs continuously while a feeder keeps the queue topped up with trivial
jobs through the schema's ``add_jobs`` function. The worker's resident set size is read
once ``baseline`` jobs have been processed and again at ``total``; the target is a change
within +/-10 %.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from sqlalchemy_graphile import DEFAULT_SCHEMA, quote_identifier

from ._procs import MeasurementError, stop, tail
from ._stats import MIB, percent_change

#: The change in RSS between the two samples that still counts as flat, in percent.
TARGET_PERCENT = 10.0
#: Jobs added per feeder call; the queue is refilled when fewer than this are left.
CHUNK = 10_000
#: How often the feeder looks at the queue, in seconds.
POLL_S = 0.05


@dataclass(frozen=True)
class SoakPlan:
    """Process ``total`` jobs, sampling RSS at ``baseline`` and at ``total``; fail if the
    count of processed jobs does not move for ``stall_timeout`` seconds."""

    total: int
    baseline: int
    concurrency: int
    mode: str
    stall_timeout: float


@dataclass(frozen=True)
class SoakResult:
    """The two RSS samples (bytes) with the processed-job counts they were taken at."""

    baseline_jobs: int
    baseline_rss: int
    final_jobs: int
    final_rss: int
    peak_rss: int
    seconds: float

    @property
    def change_percent(self) -> float:
        """The change in RSS from the first sample to the second."""
        return percent_change(self.baseline_rss, self.final_rss)

    def as_json(self) -> dict[str, float | int | bool]:
        """The figures for the JSON report."""
        return {
            "baseline_jobs": self.baseline_jobs,
            "baseline_rss_mib": self.baseline_rss / MIB,
            "final_jobs": self.final_jobs,
            "final_rss_mib": self.final_rss / MIB,
            "change_percent": self.change_percent,
            "within_target": abs(self.change_percent) <= TARGET_PERCENT,
            "peak_rss_mib": self.peak_rss / MIB,
            "seconds": self.seconds,
        }


def format_soak(plan: SoakPlan, result: SoakResult) -> str:
    """The soak's outcome as a few lines of text."""
    verdict = "flat" if abs(result.change_percent) <= TARGET_PERCENT else "NOT flat"
    return "\n".join(
        [
            f"soak: one worker process x {plan.concurrency} ({plan.mode}), "
            f"{result.final_jobs:,} jobs in {result.seconds:.1f} s",
            f"RSS after {result.baseline_jobs:,} jobs: {result.baseline_rss / MIB:.1f} MiB",
            f"RSS after {result.final_jobs:,} jobs: {result.final_rss / MIB:.1f} MiB",
            f"change: {result.change_percent:+.1f} % ({verdict}; target within "
            f"+/-{TARGET_PERCENT:.0f} %)",
            f"peak RSS: {result.peak_rss / MIB:.1f} MiB",
        ]
    )


def _add_jobs(connection: psycopg.Connection, first_id: int, count: int) -> None:
    specs = json.dumps(
        [
            {"identifier": "log_if_999", "payload": {"id": i}}
            for i in range(first_id, first_id + count)
        ]
    )
    schema = sql.SQL(quote_identifier(DEFAULT_SCHEMA))
    connection.execute(
        sql.SQL(
            "select count(*) from {schema}.add_jobs(array("
            "select json_populate_recordset(null::{schema}.job_spec, %s::json)))"
        ).format(schema=schema),
        (specs,),
    )


def _queued(connection: psycopg.Connection) -> int:
    row = connection.execute(
        sql.SQL("select count(*) from {}._private_jobs").format(
            sql.SQL(quote_identifier(DEFAULT_SCHEMA))
        )
    ).fetchone()
    assert row is not None
    return int(row[0])


def run_soak(
    plan: SoakPlan,
    url: str,
    command: list[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    logs: Path,
    log: Callable[[str], None],
) -> SoakResult:
    """Start the worker (``command``), feed it until ``plan.total`` jobs are processed,
    stop it with SIGTERM and return the samples. Raises :class:`MeasurementError` if the
    worker dies, stalls or fails to stop."""
    logs.mkdir(parents=True, exist_ok=True)
    with (
        psycopg.connect(url, autocommit=True) as connection,
        (logs / "worker.stderr").open("wb") as stderr,
    ):
        started = time.perf_counter()
        process = subprocess.Popen(command, env=dict(env), cwd=cwd, stderr=stderr)
        try:
            baseline, final = _feed(plan, connection, psutil.Process(process.pid), log)
        except MeasurementError as error:
            returncode, _ = stop(process, timeout=30)
            errors = (logs / "worker.stderr").read_text(errors="replace")
            raise MeasurementError(
                f"{error} (worker exit status {returncode}):\n{tail(errors)}"
            ) from None
        except BaseException:
            stop(process, timeout=30)
            raise
        seconds = time.perf_counter() - started
        returncode, peak = stop(process, timeout=60)
    if returncode != 0:
        errors = (logs / "worker.stderr").read_text(errors="replace")
        raise MeasurementError(f"the worker exited with status {returncode}:\n{tail(errors)}")
    return SoakResult(
        baseline_jobs=baseline[0],
        baseline_rss=baseline[1],
        final_jobs=final[0],
        final_rss=final[1],
        peak_rss=peak,
        seconds=seconds,
    )


def _feed(
    plan: SoakPlan,
    connection: psycopg.Connection,
    worker: psutil.Process,
    log: Callable[[str], None],
) -> tuple[tuple[int, int], tuple[int, int]]:
    added = processed = 0
    baseline: tuple[int, int] | None = None
    progress_at = time.monotonic()
    next_report = plan.total // 10
    while True:
        queued = _queued(connection)
        if added - queued > processed:
            processed = added - queued
            progress_at = time.monotonic()
        if baseline is None and processed >= plan.baseline:
            baseline = (processed, worker.memory_info().rss)
            log(f"[ours] soak: RSS {baseline[1] / MIB:.1f} MiB after {processed:,} jobs")
        if processed >= plan.total:
            assert baseline is not None
            return baseline, (processed, worker.memory_info().rss)
        if processed >= next_report:
            log(f"[ours] soak: {processed:,} of {plan.total:,} jobs processed")
            next_report += plan.total // 10 or plan.total
        if queued < CHUNK and added < plan.total:
            count = min(CHUNK, plan.total - added)
            _add_jobs(connection, added, count)
            added += count
        if worker.status() == psutil.STATUS_ZOMBIE:  # exited; reaped later by stop()
            raise MeasurementError("the worker exited before the soak was over")
        if time.monotonic() - progress_at > plan.stall_timeout:
            raise MeasurementError(
                f"no job was processed for {plan.stall_timeout:.0f} s "
                f"({processed:,} done, {queued:,} queued)"
            )
        time.sleep(POLL_S)
