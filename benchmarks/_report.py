"""The comparison table and its JSON form: pure functions over measured values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._stats import advantage

#: The sides of the table, in order: our worker, Node graphile-worker and pgqueuer.
SIDES = ("ours", "node", "pgqueuer")


@dataclass(frozen=True)
class Metric:
    """One row of the table: a stable ``key``, a label, a unit and which way is better."""

    key: str
    label: str
    unit: str
    higher_is_better: bool


@dataclass(frozen=True)
class Failure:
    """A measurement that was attempted and failed; ``message`` says why."""

    message: str


#: What a side measured for a metric key. A key that is absent was not measured.
Value = float | Failure


def plan_metrics(
    *,
    jobs: int,
    processes: Sequence[int],
    concurrency: int,
    modes: Sequence[str],
    latency_samples: int,
) -> list[Metric]:
    """The rows of a comparison run, in display order."""
    metrics = [
        Metric("startup_ms", "start-up + shut-down, empty queue", "ms", False),
        Metric("enqueue_rate", f"enqueue {jobs} jobs, one call", "jobs/s", True),
    ]
    for mode in modes:
        for count in processes:
            metrics.append(
                Metric(
                    f"throughput.{mode}.p{count}",
                    f"{mode}: run {jobs} jobs, {count} proc x {concurrency}",
                    "jobs/s",
                    True,
                )
            )
            metrics.append(
                Metric(
                    f"peak_rss.{mode}.p{count}",
                    f"{mode}: peak RSS per process, {count} proc",
                    "MiB",
                    False,
                )
            )
        for stat in ("p50", "p99", "max"):
            metrics.append(
                Metric(
                    f"latency.{mode}.{stat}",
                    f"{mode}: add->start latency {stat} (n={latency_samples})",
                    "ms",
                    False,
                )
            )
    return metrics


_FORMATS = {"jobs/s": "{:,.0f}", "ms": "{:,.2f}", "MiB": "{:,.1f}"}


def format_value(value: Value | None, unit: str) -> str:
    """A table cell: the number in the unit's format, ``failed`` or ``-`` (not measured)."""
    if value is None:
        return "-"
    if isinstance(value, Failure):
        return "failed"
    return _FORMATS.get(unit, "{:,.3g}").format(value)


def format_ratio(ratio: float | None) -> str:
    """A ratio cell such as ``1.25x``; ``-`` when there is none."""
    return "-" if ratio is None else f"{ratio:.2f}x"


def _number(value: Value | None) -> float | None:
    return value if isinstance(value, float | int) else None


def _error(value: Value | None) -> str | None:
    return value.message if isinstance(value, Failure) else None


def build_rows(
    metrics: Sequence[Metric],
    ours: Mapping[str, Value],
    node: Mapping[str, Value],
    pgqueuer: Mapping[str, Value] | None = None,
) -> list[dict[str, Any]]:
    """One JSON-ready dict per metric with every value, the ratios and any failure.

    The ``pgqueuer`` fields are there only when ``pgqueuer`` is given."""
    rows = []
    for metric in metrics:
        mine, theirs = ours.get(metric.key), node.get(metric.key)
        row = {
            "key": metric.key,
            "metric": metric.label,
            "unit": metric.unit,
            "better": "higher" if metric.higher_is_better else "lower",
            "ours": _number(mine),
            "node": _number(theirs),
            "ours_vs_node": advantage(
                _number(mine), _number(theirs), higher_is_better=metric.higher_is_better
            ),
            "ours_error": _error(mine),
            "node_error": _error(theirs),
        }
        if pgqueuer is not None:
            peer = pgqueuer.get(metric.key)
            row["pgqueuer"] = _number(peer)
            row["ours_vs_pgqueuer"] = advantage(
                _number(mine), _number(peer), higher_is_better=metric.higher_is_better
            )
            row["pgqueuer_error"] = _error(peer)
        rows.append(row)
    return rows


RATIO_NOTE = (
    "ours vs Node = ours/Node for rates (jobs/s), Node/ours for times (ms) and memory (MiB): "
    "above 1x means ours is better."
)
PGQUEUER_NOTE = "ours vs pgqueuer: the same, against pgqueuer."


def _cells(
    metrics: Sequence[Metric],
    ours: Mapping[str, Value],
    node: Mapping[str, Value],
    pgqueuer: Mapping[str, Value] | None,
) -> list[tuple[str, ...]]:
    """The header and one row of cells per metric; pgqueuer's columns only if given."""
    header = ["metric", "unit", "ours", "Node", "ours vs Node"]
    if pgqueuer is not None:
        header += ["pgqueuer", "ours vs pgqueuer"]
    lines = [tuple(header)]
    for row in build_rows(metrics, ours, node, pgqueuer):
        unit = row["unit"]
        cells = [
            row["metric"],
            unit,
            format_value(ours.get(row["key"]), unit),
            format_value(node.get(row["key"]), unit),
            format_ratio(row["ours_vs_node"]),
        ]
        if pgqueuer is not None:
            cells += [
                format_value(pgqueuer.get(row["key"]), unit),
                format_ratio(row["ours_vs_pgqueuer"]),
            ]
        lines.append(tuple(cells))
    return lines


def format_table(
    metrics: Sequence[Metric],
    ours: Mapping[str, Value],
    node: Mapping[str, Value],
    pgqueuer: Mapping[str, Value] | None = None,
) -> str:
    """The comparison as a plain-text table, followed by the note on the ratio columns.

    pgqueuer's value and ratio columns are there only when ``pgqueuer`` is given."""
    note = RATIO_NOTE if pgqueuer is None else f"{RATIO_NOTE} {PGQUEUER_NOTE}"
    return _align(_cells(metrics, ours, node, pgqueuer)) + "\n" + note


def format_markdown(
    metrics: Sequence[Metric],
    ours: Mapping[str, Value],
    node: Mapping[str, Value],
    pgqueuer: Mapping[str, Value] | None = None,
) -> str:
    """The same table as GitHub-flavoured Markdown, for docs/performance.md."""
    lines = _cells(metrics, ours, node, pgqueuer)
    rule = "| --- | --- |" + " ---: |" * (len(lines[0]) - 2)
    out = ["| " + " | ".join(lines[0]) + " |", rule]
    out += ["| " + " | ".join(line) + " |" for line in lines[1:]]
    return "\n".join(out)


def _align(lines: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    rule = tuple("-" * width for width in widths)
    rendered = []
    for line in [lines[0], rule, *lines[1:]]:
        cells = [line[0].ljust(widths[0]), line[1].ljust(widths[1])]
        cells += [cell.rjust(width) for cell, width in zip(line[2:], widths[2:], strict=True)]
        rendered.append("  ".join(cells).rstrip())
    return "\n".join(rendered)


def failures(
    ours: Mapping[str, Value],
    node: Mapping[str, Value],
    pgqueuer: Mapping[str, Value] | None = None,
) -> list[dict[str, str]]:
    """Every failed measurement as ``{"side", "key", "error"}``, ours first."""
    found = []
    for side, values in zip(SIDES, (ours, node, pgqueuer or {}), strict=True):
        for key, value in values.items():
            if isinstance(value, Failure):
                found.append({"side": side, "key": key, "error": value.message})
    return found


def json_document(
    *,
    config: Mapping[str, Any],
    machine: Mapping[str, Any],
    metrics: Sequence[Metric],
    ours: Mapping[str, Value],
    node: Mapping[str, Value],
    details: Mapping[str, Any],
    pgqueuer: Mapping[str, Value] | None = None,
) -> dict[str, Any]:
    """The whole run as one JSON-ready document (no NaN, no infinities)."""
    return {
        "config": dict(config),
        "machine": dict(machine),
        "rows": build_rows(metrics, ours, node, pgqueuer),
        "ratio_note": RATIO_NOTE if pgqueuer is None else f"{RATIO_NOTE} {PGQUEUER_NOTE}",
        "failures": failures(ours, node, pgqueuer),
        "details": dict(details),
    }


VARIANT_NOTE = (
    "vs ours = with/without for rates (jobs/s), without/with for times (ms) and memory (MiB): "
    "1.00x means no difference, below 1x the variant costs that much, above 1x it is faster."
)


def variant_rows(
    metrics: Sequence[Metric], values: Mapping[str, Mapping[str, Value]]
) -> list[dict[str, Any]]:
    """For a run of our worker without plugins (``values["ours"]``) and with them (the other
    keys): one JSON-ready dict per metric with every value and each variant's ratio."""
    baseline = values.get("ours", {})
    rows = []
    for metric in metrics:
        plain = _number(baseline.get(metric.key))
        row: dict[str, Any] = {
            "key": metric.key,
            "metric": metric.label,
            "unit": metric.unit,
            "better": "higher" if metric.higher_is_better else "lower",
        }
        for name, measured in values.items():
            value = measured.get(metric.key)
            row[name] = _number(value)
            if _error(value) is not None:
                row[f"{name}_error"] = _error(value)
            if name != "ours":
                row[f"{name}_vs_ours"] = advantage(
                    _number(value), plain, higher_is_better=metric.higher_is_better
                )
        rows.append(row)
    return rows


def format_variants(
    metrics: Sequence[Metric], values: Mapping[str, Mapping[str, Value]], *, markdown: bool = False
) -> str:
    """The run of our worker without and with plugins, as a plain-text (or Markdown) table:
    a column per variant, each followed by its ratio to the run without plugins."""
    variants = [name for name in values if name != "ours"]
    header = ["metric", "unit", "ours"]
    for name in variants:
        header += [name, "vs ours"]
    lines = [tuple(header)]
    for metric in metrics:
        plain = values.get("ours", {}).get(metric.key)
        cells = [metric.label, metric.unit, format_value(plain, metric.unit)]
        for name in variants:
            value = values[name].get(metric.key)
            ratio = advantage(
                _number(value), _number(plain), higher_is_better=metric.higher_is_better
            )
            cells += [format_value(value, metric.unit), format_ratio(ratio)]
        lines.append(tuple(cells))
    if not markdown:
        return _align(lines) + "\n" + VARIANT_NOTE
    rule = "| --- | --- |" + " ---: |" * (len(header) - 2)
    rendered = ["| " + " | ".join(lines[0]) + " |", rule]
    rendered += ["| " + " | ".join(line) + " |" for line in lines[1:]]
    return "\n".join(rendered)
