"""``python -m benchmarks``: our worker against Node graphile-worker 0.17 (and, with
``--sides ... pgqueuer``, against pgqueuer), same run, same server. See
``docs/performance.md`` for the method and ``--help`` for the options.

Progress and failures go to stderr, the table to stdout, everything to the JSON file.
Exits with status 1 if any measurement failed (the others are still reported).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ._config import BenchConfig, parse_config
from ._database import ScratchDatabases, describe_server, server_url
from ._machine import describe_machine
from ._measure import Comparison, Plan, Side
from ._node import NodeSide
from ._pgqueuer import PgQueuerSide
from ._procs import MeasurementError
from ._python import PythonSide
from ._report import (
    VARIANT_NOTE,
    Failure,
    Metric,
    failures,
    format_markdown,
    format_table,
    format_variants,
    json_document,
    plan_metrics,
    variant_rows,
)
from ._soak import SoakPlan, format_soak, run_soak


def log(message: str) -> None:
    """Progress for the person watching (stderr)."""
    print(message, file=sys.stderr, flush=True)


def _config_json(config: BenchConfig) -> dict[str, Any]:
    keep = {"jobs", "processes", "concurrency", "latency_samples", "latency_warmup", "modes"}
    if config.soak is not None:
        keep = {"concurrency", "soak", "soak_baseline", "soak_mode"}
    return {key: value for key, value in asdict(config).items() if key in keep}


def _write(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    log(f"results written to {path}")


def compare(config: BenchConfig) -> int:
    """Run the comparison, print the table, write the JSON; 1 if anything failed."""
    server = server_url(config.database_url)
    machine: dict[str, Any] = {**describe_machine(), **describe_server(server)}
    with (
        tempfile.TemporaryDirectory(prefix="sg-bench-") as tmp,
        ScratchDatabases(server) as databases,
    ):
        workdir = Path(tmp)
        sides: list[Side] = []
        if "ours" in config.sides or config.variants:
            ours = PythonSide(config.event_loop, metrics=config.metrics, enqueue=config.enqueue)
            machine.update(ours.describe())
            sides.append(ours)
        # The variants enqueue as ours does, so that they differ from it in one thing only.
        for plugins in config.plugins:
            sides.append(
                PythonSide(
                    config.event_loop,
                    metrics=config.metrics,
                    plugins=plugins,
                    enqueue=config.enqueue,
                )
            )
        if config.asynchronous_release_commit:
            sides.append(
                PythonSide(
                    config.event_loop,
                    metrics=config.metrics,
                    asynchronous_commit=True,
                    enqueue=config.enqueue,
                )
            )
        if "node" in config.sides and not config.variants:
            log(f"preparing Node graphile-worker in {config.node_install_dir} ...")
            node = NodeSide(config.node_install_dir, workdir)
            machine.update(node.describe())
            sides.append(node)
        if "pgqueuer" in config.sides and not config.variants:
            limit = config.concurrency if config.pgqueuer_limit is None else config.pgqueuer_limit
            pgqueuer = PgQueuerSide(config.event_loop, concurrency_limit=limit)
            machine.update(pgqueuer.describe())
            sides.append(pgqueuer)
        plan = Plan(
            jobs=config.jobs,
            processes=config.processes,
            concurrency=config.concurrency,
            modes=config.modes,
            latency_samples=config.latency_samples,
            latency_warmup=config.latency_warmup,
            timeout=config.timeout,
        )
        comparison = Comparison(plan, sides, databases, workdir, log)
        comparison.run()
    metrics = plan_metrics(
        jobs=config.jobs,
        processes=config.processes,
        concurrency=config.concurrency,
        modes=config.modes,
        latency_samples=config.latency_samples,
    )
    if config.variants:
        return _report_variants(config, machine, metrics, comparison)
    ours_values = comparison.values.get("ours", {})
    node_values = comparison.values.get("node", {})
    pgqueuer_values = comparison.values.get("pgqueuer")
    print(format_table(metrics, ours_values, node_values, pgqueuer_values))
    if config.markdown:
        print()
        print(format_markdown(metrics, ours_values, node_values, pgqueuer_values))
    document = json_document(
        config=_config_json(config),
        machine=machine,
        metrics=metrics,
        ours=ours_values,
        node=node_values,
        pgqueuer=pgqueuer_values,
        details={**comparison.details, "created_at": dt.datetime.now(dt.UTC).isoformat()},
    )
    _write(config.output_path, document)
    failed = failures(ours_values, node_values, pgqueuer_values)
    if failed:
        log(f"{len(failed)} measurement(s) FAILED:")
        for failure in failed:
            first_line = failure["error"].splitlines()[0]
            log(f"  [{failure['side']}] {failure['key']}: {first_line}")
        return 1
    return 0


def _report_variants(
    config: BenchConfig, machine: dict[str, Any], metrics: list[Metric], comparison: Comparison
) -> int:
    """Print and write a run of variants (``--plugins``, ``--asynchronous-release-commit``):
    our worker as it is and each variant."""
    values = comparison.values
    print(format_variants(metrics, values))
    if config.markdown:
        print()
        print(format_variants(metrics, values, markdown=True))
    failed = [
        (side, key, value.message)
        for side, measured in values.items()
        for key, value in measured.items()
        if isinstance(value, Failure)
    ]
    document = {
        "config": {
            **_config_json(config),
            "plugins": list(config.plugins),
            "asynchronous_release_commit": config.asynchronous_release_commit,
        },
        "machine": machine,
        "rows": variant_rows(metrics, values),
        "ratio_note": VARIANT_NOTE,
        "failures": [{"side": s, "key": k, "error": e} for s, k, e in failed],
        "details": {**comparison.details, "created_at": dt.datetime.now(dt.UTC).isoformat()},
    }
    _write(config.output_path, document)
    for side, key, error in failed:
        log(f"  [{side}] {key} FAILED: {error.splitlines()[0]}")
    return 1 if failed else 0


def soak(config: BenchConfig) -> int:
    """Run the soak, print the outcome, write the JSON; 1 if it failed."""
    assert config.soak is not None
    server = server_url(config.database_url)
    side = PythonSide(config.event_loop, metrics=config.metrics)
    plan = SoakPlan(
        total=config.soak,
        baseline=config.soak_baseline,
        concurrency=config.concurrency,
        mode=config.soak_mode,
        stall_timeout=config.timeout,
    )
    machine = {**describe_machine(), **describe_server(server), **side.describe()}
    with (
        tempfile.TemporaryDirectory(prefix="sg-bench-") as tmp,
        ScratchDatabases(server) as databases,
    ):
        url = databases.create()
        try:
            side.install_schema(url, timeout=config.timeout)
            result = run_soak(
                plan,
                url,
                side.soak_command(url, plan.concurrency, plan.mode),
                env=side.env,
                cwd=side.cwd,
                logs=Path(tmp),
                log=log,
            )
        except MeasurementError as error:
            log(f"[ours] soak FAILED: {error}")
            return 1
    print(format_soak(plan, result))
    document = {
        "config": _config_json(config),
        "machine": machine,
        "soak": result.as_json(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    _write(config.output_path, document)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    config = parse_config(argv)
    return soak(config) if config.soak is not None else compare(config)


if __name__ == "__main__":
    sys.exit(main())
