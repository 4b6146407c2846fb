"""``python -m benchmarks.recovery_latency``: how long a job of a worker killed with SIGKILL
waits before another worker runs it again.

In a scratch database, each round adds a job, starts a victim worker process that takes it
and blocks in it, then starts a rescuing worker process and, once it is up, kills the victim
with SIGKILL and waits until the rescuer starts the job again. The latency is the time from
the kill to that second start, both read on the database clock. (The rescuer starts after
the victim took the job, or it would take the job itself.)
Every worker uses the fast settings of docs/reliability.md (heartbeat every second, dead
after 3 s, a sweep every second) unless told otherwise.

Progress goes to stderr, the distribution to stdout, everything to ``--json`` if given.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import psycopg

from sqlalchemy_graphile import Task, WorkerContext

from ._database import ScratchDatabases, describe_server, install_our_schema, server_url
from ._machine import describe_machine

ROOT = Path(__file__).resolve().parents[1]
URL_ENV = "SG_RECOVERY_BENCH_URL"
VICTIM_ENV = "SG_RECOVERY_BENCH_VICTIM"
STARTS_DDL = (
    "create table recovery_starts"
    " (job_id bigint, pid int, attempts int, at timestamptz default clock_timestamp())"
)
#: How long a round may wait beyond the slowest predicted recovery before giving up.
SLACK = 60.0


class Hold(Task):
    """Records its start; in a victim process, then blocks until the process is killed."""

    IDENTIFIER: ClassVar[str] = "recovery_bench_hold"

    def run(self, ctx: WorkerContext) -> None:
        with psycopg.connect(os.environ[URL_ENV], autocommit=True) as db:
            db.execute(
                "insert into recovery_starts (job_id, pid, attempts) values (%s, %s, %s)",
                (ctx.job.id, os.getpid(), ctx.job.attempts),
            )
        while os.environ.get(VICTIM_ENV) == "1":  # until SIGKILL
            time.sleep(0.05)


def _worker(url: str, options: list[str], log: Path, *, victim: bool) -> subprocess.Popen[bytes]:
    env = {**os.environ, URL_ENV: url, VICTIM_ENV: "1" if victim else "0"}
    command = [
        sys.executable,
        "-m",
        "sqlalchemy_graphile",
        "-c",
        url,
        "run",
        "--no-migrate",
        "--tasks",
        "benchmarks.recovery_latency:Hold",
        "--poll-interval",
        "1",
        *options,
    ]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait(
    db: psycopg.Connection, sql: str, args: tuple[Any, ...], what: str, within: float = SLACK
) -> Any:
    deadline = time.monotonic() + within
    while True:
        row = db.execute(sql, args).fetchone()
        if row is not None:
            return row[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {within:.0f} s")
        time.sleep(0.02)


def _round(
    db: psycopg.Connection,
    url: str,
    options: list[str],
    sweep: list[str],
    log: Path,
    within: float,
) -> float:
    add = "select id from graphile_worker.add_job('recovery_bench_hold')"
    (job_id,) = db.execute(add).fetchone()  # type: ignore[misc]
    victim = _worker(url, [*options, "--sweep-interval", "-1"], log, victim=True)
    rescuer: subprocess.Popen[bytes] | None = None
    try:
        _wait(
            db,
            "select pid from recovery_starts where job_id = %s and pid = %s",
            (job_id, victim.pid),
            "start in the victim",
        )
        rescuer = _worker(url, [*options, *sweep], log, victim=False)
        _wait(
            db,
            "select id from graphile_worker._private_workers where metadata->>'pid' = %s",
            (str(rescuer.pid),),
            "the rescuer to register",
        )
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at: datetime = db.execute("select clock_timestamp()").fetchone()[0]  # type: ignore[index]
        again: datetime = _wait(
            db,
            "select at from recovery_starts where job_id = %s and pid <> %s",
            (job_id, victim.pid),
            "second start",
            within,
        )
    finally:
        if rescuer is not None:
            rescuer.send_signal(signal.SIGTERM)  # a clean stop deregisters it
            rescuer.wait(timeout=30)
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    return (again - killed_at).total_seconds()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recovery_latency")
    parser.add_argument("--url", help="server URL (default $DATABASE_URL or the local server)")
    parser.add_argument("--kills", type=int, default=20, help="rounds (default 20)")
    parser.add_argument("--heartbeat-interval", type=float, default=1.0)
    parser.add_argument("--sweep-threshold", type=float, default=3.0)
    parser.add_argument("--sweep-interval", type=float, default=1.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.kills < 1:
        parser.error("--kills must be at least 1")
    return args


def summarize(latencies: list[float]) -> dict[str, float]:
    """min, median, 90th percentile, max and mean, in seconds."""
    ordered = sorted(latencies)
    p90 = ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p90": p90,
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    options = [
        "--heartbeat-interval",
        str(args.heartbeat_interval),
        "--sweep-threshold",
        str(args.sweep_threshold),
    ]
    server = server_url(args.url)
    latencies: list[float] = []
    with ScratchDatabases(server, prefix=None) as databases, tempfile.TemporaryDirectory() as tmp:
        url = databases.create()
        install_our_schema(url)
        log = Path(tmp) / "workers.log"
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(STARTS_DDL)
            sweep = ["--sweep-interval", str(args.sweep_interval)]
            within = args.sweep_threshold + args.sweep_interval + SLACK
            for number in range(1, args.kills + 1):
                latencies.append(_round(db, url, options, sweep, log, within))
                print(f"kill {number}: {latencies[-1]:.2f} s", file=sys.stderr)
        machine = {**describe_machine(), **describe_server(url)}
    summary = summarize(latencies)
    settings = (
        f"heartbeat {args.heartbeat_interval:g} s, threshold {args.sweep_threshold:g} s, "
        f"sweep {args.sweep_interval:g} s"
    )
    print(f"Recovery latency over {len(latencies)} kills ({settings}):")
    print("  " + ", ".join(f"{name} {value:.2f} s" for name, value in summary.items()))
    if args.json is not None:
        document = {
            "settings": vars(args) | {"json": None},
            "latencies": latencies,
            "summary": summary,
            "machine": machine,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
