"""``python -m benchmarks.dashboard``: how fast the dashboard answers on a big queue.

It fills a scratch database with ``--jobs`` jobs (1 000 000 by default) in a realistic mix
of states, tasks and queues, then asks the dashboard app in process (no network, the real
routes, SQL and templates) for each kind of jobs list, a job, and the other pages, ``--repeat``
times each, and prints the median and 95th percentile. The target: every jobs list of the
default page size that an index can serve answers in under 100 ms. A text search and the
list of locked jobs read every row (the schema has no index for them), and the overview,
queue and worker pages count every job: they are reported without a target.

Progress goes to stderr, the table to stdout, everything to ``--json`` if given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_graphile._urls import async_url
from sqlalchemy_graphile.dashboard import dashboard_app

from ._database import ScratchDatabases, describe_server, install_our_schema, server_url
from ._machine import describe_machine

#: Lists must answer within this many milliseconds (95th percentile).
TARGET_MS = 100.0

# Every job gets one of 20 tasks; a third are in one of 50 queues; a seventh have a key.
# About 1 % are failed and 0.01 % locked; the rest are ready or scheduled, half each.
_FILL = """
insert into graphile_worker._private_tasks (identifier)
  select 'task_' || n from generate_series(1, 20) as n;
insert into graphile_worker._private_job_queues (queue_name)
  select 'queue_' || n from generate_series(1, 50) as n;
insert into graphile_worker._private_jobs
  (task_id, job_queue_id, payload, priority, run_at, attempts, max_attempts, last_error, key,
   locked_at, locked_by)
select tasks.first + n % 20,
       case when n % 3 = 0 then queues.first + n % 50 end,
       json_build_object('user_id', n, 'email', 'user' || n || '@example.com',
                         'note', md5(n::text)),
       n % 5 - 2,
       now() + (n % 1000 - 500) * interval '1 minute',
       case when n % 97 = 0 then 25 when n % 13 = 0 then 3 else 0 end,
       25,
       case when n % 13 = 0 then 'Error: upstream said no to ' || n end,
       case when n % 7 = 0 then 'key-' || n end,
       case when n % 10007 = 0 then now() - interval '5 minutes' end,
       case when n % 10007 = 0 then 'pool-' || n % 3 end
  from generate_series(1, %(jobs)s) as n,
       (select min(id) as first from graphile_worker._private_tasks) as tasks,
       (select min(id) as first from graphile_worker._private_job_queues) as queues;
"""


@dataclass(frozen=True, slots=True)
class Case:
    """One request measured: what it shows, its path, and whether it has the target."""

    name: str
    path: str
    listed: bool = True


@dataclass(frozen=True, slots=True)
class Timing:
    """A case's timings in milliseconds."""

    name: str
    path: str
    target_ms: float | None
    p50_ms: float
    p95_ms: float
    max_ms: float

    @property
    def met(self) -> bool | None:
        """Whether the case met its target (``None``: no target)."""
        return None if self.target_ms is None else self.p95_ms < self.target_ms


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _fill(url: str, jobs: int) -> None:
    install_our_schema(url)
    with psycopg.connect(url, autocommit=True) as connection:
        started = time.monotonic()
        connection.execute(_FILL.replace("%(jobs)s", str(int(jobs))))
        connection.execute("vacuum analyze graphile_worker._private_jobs")
        _log(f"filled {jobs} jobs in {time.monotonic() - started:.1f} s")


async def _get(http: httpx.AsyncClient, path: str) -> httpx.Response:
    response = await http.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:300]}")
    return response


async def _cases(http: httpx.AsyncClient) -> list[Case]:
    """The requests to time; the cursors come from real first pages."""
    cases = [
        Case("all jobs, newest first", "/jobs"),
        Case("ready, in run order", "/jobs?state=ready"),
        Case("scheduled, in run order", "/jobs?state=scheduled"),
        Case("failed", "/jobs?state=failed"),
        Case("locked (no index: reads every row)", "/jobs?state=locked", listed=False),
        Case("one task", "/jobs?task=task_7"),
        Case("one queue", "/jobs?queue=queue_7"),
        Case("failed of one task", "/jobs?state=failed&task=task_7"),
        Case("all, 500 per page (10 pages' worth)", "/jobs?limit=500", listed=False),
        Case("JSON API, all jobs", "/api/jobs"),
    ]
    for state in ("all", "ready", "failed"):
        cursor = None
        for _ in range(20):  # 10 000 rows in, or as far as the jobs go
            after = "" if cursor is None else f"&cursor={cursor}"
            page = (await _get(http, f"/api/jobs?state={state}&limit=500{after}")).json()
            if page["next_cursor"] is None:
                break
            cursor = page["next_cursor"]
        if cursor is not None:
            path = f"/jobs?state={state}&cursor={cursor}"
            cases.append(Case(f"{state}, a page deep in the list", path))
    job_id = (await _get(http, "/api/jobs?limit=1")).json()["jobs"][0]["id"]
    cases += [
        Case("one job", f"/jobs/{job_id}"),
        Case("search: digits, common", "/jobs?q=777", listed=False),
        Case("search: digits, rare", "/jobs?q=7777777", listed=False),
        Case("search: an e-mail address (one job)", "/jobs?q=user77777%40example", listed=False),
        Case("search: words, common", "/jobs?q=Upstream+said", listed=False),
        Case("search: words, no match", "/jobs?q=nothing+like+this", listed=False),
        Case("overview (counts every job)", "/", listed=False),
        Case("queues (counts every queued job)", "/queues", listed=False),
        Case("workers (reads every lock)", "/workers", listed=False),
    ]
    return cases


async def _measure(url: str, repeat: int) -> list[Timing]:
    engine = create_async_engine(async_url(url), poolclass=pool.AsyncAdaptedQueuePool)
    app = dashboard_app(engine, sample_interval=3600, statement_timeout=60)
    transport = httpx.ASGITransport(app=app)
    timings = []
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            for case in await _cases(http):
                await _get(http, case.path)  # warm: plan, cache, connection
                samples = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    await _get(http, case.path)
                    samples.append((time.perf_counter() - started) * 1000)
                samples.sort()
                timing = Timing(
                    case.name,
                    case.path,
                    TARGET_MS if case.listed else None,
                    statistics.median(samples),
                    samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))],
                    samples[-1],
                )
                timings.append(timing)
                _log(f"{case.name}: median {timing.p50_ms:.1f} ms, p95 {timing.p95_ms:.1f} ms")
    finally:
        await app.close()
        await engine.dispose()
    return timings


def format_table(timings: Sequence[Timing]) -> str:
    """The timings as a Markdown table."""
    lines = [
        "| request | median ms | p95 ms | max ms | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for t in timings:
        target = "-" if t.met is None else ("met" if t.met else "MISSED") + f" (< {t.target_ms:g})"
        lines.append(f"| {t.name} | {t.p50_ms:.1f} | {t.p95_ms:.1f} | {t.max_ms:.1f} | {target} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard", description=__doc__)
    parser.add_argument("--url", help="PostgreSQL server (default $DATABASE_URL or local)")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs to fill in")
    parser.add_argument("--repeat", type=int, default=20, help="timed requests per case")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.jobs < 1000 or args.repeat < 1:
        parser.error("--jobs must be at least 1000 and --repeat at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Fill, measure, report; 1 if a list missed the target."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    server = server_url(args.url)
    with ScratchDatabases(server, prefix=None) as databases:
        url = databases.create()
        _fill(url, args.jobs)
        load_before = os.getloadavg()
        timings = asyncio.run(_measure(url, args.repeat))
        load_after = os.getloadavg()
        document: dict[str, Any] = {
            "jobs": args.jobs,
            "repeat": args.repeat,
            # Other work on the machine moves the numbers: the 1-minute load average.
            "load_average": {"before": load_before[0], "after": load_after[0]},
            "machine": {**describe_machine(), **describe_server(url)},
            "timings": [{**asdict(t), "met": t.met} for t in timings],
        }
    print(format_table(timings))
    print(f"\nLoad average (1 min) before and after: {load_before[0]:.1f}, {load_after[0]:.1f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if all(t.met is not False for t in timings) else 1


if __name__ == "__main__":
    sys.exit(main())
