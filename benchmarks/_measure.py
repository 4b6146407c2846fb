"""The comparison run: each measurement, for each side, on a fresh database.

A measurement that fails (a child exits with an error, hangs, or leaves jobs behind) is
recorded as a :class:`~benchmarks._report.Failure` for its rows, reported on stderr at
once, and the run goes on with the next one.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from ._database import ScratchDatabases
from ._procs import MeasurementError, result_field, run_one, run_together
from ._report import Failure, Value
from ._stats import MIB, LatencySummary, rate


class Side(Protocol):
    """One worker implementation under test (see ``_python.PythonSide``, ``_node.NodeSide``,
    ``_pgqueuer.PgQueuerSide``)."""

    @property
    def name(self) -> str: ...

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes it runs in; the others are not measured for it."""
        ...

    @property
    def measures_latency(self) -> bool:
        """Whether it takes part in the add->start latency runs."""
        ...

    @property
    def cwd(self) -> Path: ...

    @property
    def env(self) -> Mapping[str, str]: ...

    def install_schema(self, url: str, *, timeout: float) -> None: ...

    def enqueue_command(self, url: str, count: int) -> list[str]: ...

    def once_command(self, url: str, concurrency: int, mode: str) -> list[str]: ...

    def latency_command(
        self, url: str, concurrency: int, samples: int, warmup: int, mode: str
    ) -> list[str]: ...

    def jobs_left(self, url: str) -> tuple[int, int]:
        """``(jobs left, of which with an error)`` in its own tables."""
        ...


@dataclass(frozen=True)
class Plan:
    """What to measure: N jobs, P processes (each value), C concurrency, modes, samples."""

    jobs: int
    processes: tuple[int, ...]
    concurrency: int
    modes: tuple[str, ...]
    latency_samples: int
    latency_warmup: int
    timeout: float


class Comparison:
    """Runs every measurement of a :class:`Plan` for each side and collects the values.

    ``values[side][metric key]`` holds a number or a :class:`Failure`; ``details[side]``
    holds the raw figures (every enqueue call, every child's peak RSS, latency min/mean).
    """

    def __init__(
        self,
        plan: Plan,
        sides: Sequence[Side],
        databases: ScratchDatabases,
        workdir: Path,
        log: Callable[[str], None],
    ) -> None:
        self.plan = plan
        self.sides = sides
        self.databases = databases
        self.workdir = workdir
        self.log = log
        self.values: dict[str, dict[str, Value]] = {side.name: {} for side in sides}
        self.details: dict[str, dict[str, Any]] = {
            side.name: {"enqueue": [], "throughput": [], "latency": {}} for side in sides
        }
        self._enqueue_rates: dict[str, list[float]] = {side.name: [] for side in sides}
        self._enqueue_failures: dict[str, list[str]] = {side.name: [] for side in sides}
        self._runs = 0

    def run(self) -> None:
        """Take every measurement, in the same order for each side."""
        plan = self.plan
        self._step("start-up", ["startup_ms"], self._startup, self.sides)
        for mode in plan.modes:
            for processes in plan.processes:
                self._step(
                    f"{mode} {processes}x{plan.concurrency}",
                    [f"throughput.{mode}.p{processes}", f"peak_rss.{mode}.p{processes}"],
                    partial(self._throughput, mode=mode, processes=processes),
                    [side for side in self.sides if mode in side.modes],
                )
        for mode in plan.modes:
            self._step(
                f"{mode} latency",
                [f"latency.{mode}.{stat}" for stat in ("p50", "p99", "max")],
                partial(self._latency, mode=mode),
                [side for side in self.sides if side.measures_latency and mode in side.modes],
            )
        for side in self.sides:
            rates, errors = self._enqueue_rates[side.name], self._enqueue_failures[side.name]
            if rates:
                self.values[side.name]["enqueue_rate"] = statistics.median(rates)
            elif errors:
                self.values[side.name]["enqueue_rate"] = Failure(errors[0])

    def _step(
        self,
        label: str,
        keys: Sequence[str],
        measure: Callable[[Side, str], dict[str, float]],
        sides: Sequence[Side],
    ) -> None:
        for side in sides:
            url = self.databases.create()
            try:
                side.install_schema(url, timeout=self.plan.timeout)
                self.values[side.name].update(measure(side, url))
            except MeasurementError as error:
                self.log(f"[{side.name}] {label} FAILED: {error}")
                for key in keys:
                    self.values[side.name][key] = Failure(str(error))
            finally:
                self.databases.drop(url)

    def _logs(self, side: Side, what: str) -> Path:
        self._runs += 1
        return self.workdir / "logs" / f"{self._runs:03d}-{side.name}-{what}"

    def _startup(self, side: Side, url: str) -> dict[str, float]:
        command = side.once_command(url, self.plan.concurrency, "unbatched")
        logs = self._logs(side, "startup")
        child = run_one(command, env=side.env, cwd=side.cwd, logs=logs, timeout=self.plan.timeout)
        self.details[side.name]["startup_s"] = child.seconds
        self.log(
            f"[{side.name}] start-up + shut-down on an empty queue: {child.seconds * 1000:.0f} ms"
        )
        return {"startup_ms": child.seconds * 1000}

    def _enqueue(self, side: Side, url: str) -> None:
        plan = self.plan
        try:
            logs = self._logs(side, "enqueue")
            child = run_one(
                side.enqueue_command(url, plan.jobs),
                env=side.env,
                cwd=side.cwd,
                logs=logs,
                timeout=plan.timeout,
            )
            call_s = float(result_field(child, "call_s"))
            left, _ = side.jobs_left(url)
            if left != plan.jobs:
                raise MeasurementError(f"enqueue left {left} jobs in the table, not {plan.jobs}")
        except MeasurementError as error:
            self._enqueue_failures[side.name].append(str(error))
            raise
        jobs_per_s = rate(plan.jobs, call_s)
        self._enqueue_rates[side.name].append(jobs_per_s)
        self.details[side.name]["enqueue"].append(
            {"call_s": call_s, "process_s": child.seconds, "jobs_per_s": jobs_per_s}
        )
        self.log(f"[{side.name}] enqueued {plan.jobs} jobs in one call: {call_s:.3f} s")

    def _throughput(self, side: Side, url: str, mode: str, processes: int) -> dict[str, float]:
        plan = self.plan
        self._enqueue(side, url)
        command = side.once_command(url, plan.concurrency, mode)
        logs = self._logs(side, f"{mode}-p{processes}")
        batch = run_together(
            [command] * processes, env=side.env, cwd=side.cwd, logs=logs, timeout=plan.timeout
        )
        left, failed = side.jobs_left(url)
        if left:
            raise MeasurementError(
                f"{left} of {plan.jobs} jobs were left in the queue ({failed} with an error)"
            )
        jobs_per_s = rate(plan.jobs, batch.seconds)
        peak_mib = batch.max_peak_rss / MIB
        self.details[side.name]["throughput"].append(
            {
                "mode": mode,
                "processes": processes,
                "concurrency": plan.concurrency,
                "seconds": batch.seconds,
                "jobs_per_s": jobs_per_s,
                "peak_rss_mib": [child.peak_rss / MIB for child in batch.children],
            }
        )
        self.log(
            f"[{side.name}] {mode} {processes}x{plan.concurrency}: {plan.jobs} jobs in "
            f"{batch.seconds:.2f} s = {jobs_per_s:,.0f} jobs/s, peak RSS {peak_mib:.1f} MiB"
        )
        return {
            f"throughput.{mode}.p{processes}": jobs_per_s,
            f"peak_rss.{mode}.p{processes}": peak_mib,
        }

    def _latency(self, side: Side, url: str, mode: str) -> dict[str, float]:
        plan = self.plan
        command = side.latency_command(
            url, plan.concurrency, plan.latency_samples, plan.latency_warmup, mode
        )
        logs = self._logs(side, f"{mode}-latency")
        child = run_one(command, env=side.env, cwd=side.cwd, logs=logs, timeout=plan.timeout)
        samples = [float(s) for s in result_field(child, "samples_ms")]
        if len(samples) != plan.latency_samples:
            raise MeasurementError(
                f"got {len(samples)} latency samples, expected {plan.latency_samples}"
            )
        summary = LatencySummary.of(samples)
        add_calls = LatencySummary.of([float(s) for s in result_field(child, "add_call_ms")])
        self.details[side.name]["latency"][mode] = {
            "add_to_start": vars(summary),
            "add_call": vars(add_calls),
        }
        self.log(
            f"[{side.name}] {mode} add->start latency: p50 {summary.p50_ms:.2f} ms, "
            f"p99 {summary.p99_ms:.2f} ms, max {summary.max_ms:.2f} ms "
            f"(the add call alone: p50 {add_calls.p50_ms:.2f} ms)"
        )
        return {
            f"latency.{mode}.p50": summary.p50_ms,
            f"latency.{mode}.p99": summary.p99_ms,
            f"latency.{mode}.max": summary.max_ms,
        }
