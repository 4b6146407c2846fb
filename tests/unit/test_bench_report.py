"""The benchmark's table and JSON document."""

from __future__ import annotations

import json

from benchmarks._report import (
    RATIO_NOTE,
    VARIANT_NOTE,
    Failure,
    Metric,
    Value,
    build_rows,
    failures,
    format_markdown,
    format_ratio,
    format_table,
    format_value,
    format_variants,
    json_document,
    plan_metrics,
    variant_rows,
)

METRICS = [
    Metric("rate", "run 10 jobs", "jobs/s", True),
    Metric("lat", "latency p50", "ms", False),
    Metric("rss", "peak RSS", "MiB", False),
]


def test_plan_metrics_lists_every_row_once_in_order() -> None:
    metrics = plan_metrics(
        jobs=200,
        processes=(1, 2),
        concurrency=4,
        modes=("unbatched", "batched"),
        latency_samples=20,
    )
    keys = [m.key for m in metrics]
    assert keys == [
        "startup_ms",
        "enqueue_rate",
        "throughput.unbatched.p1",
        "peak_rss.unbatched.p1",
        "throughput.unbatched.p2",
        "peak_rss.unbatched.p2",
        "latency.unbatched.p50",
        "latency.unbatched.p99",
        "latency.unbatched.max",
        "throughput.batched.p1",
        "peak_rss.batched.p1",
        "throughput.batched.p2",
        "peak_rss.batched.p2",
        "latency.batched.p50",
        "latency.batched.p99",
        "latency.batched.max",
    ]
    by_key = {m.key: m for m in metrics}
    assert by_key["throughput.batched.p2"].label == "batched: run 200 jobs, 2 proc x 4"
    assert by_key["throughput.batched.p2"].higher_is_better
    assert not by_key["latency.unbatched.p99"].higher_is_better
    assert "n=20" in by_key["latency.unbatched.p99"].label


def test_format_value_per_unit() -> None:
    assert format_value(12345.6, "jobs/s") == "12,346"
    assert format_value(4.256, "ms") == "4.26"
    assert format_value(81.24, "MiB") == "81.2"
    assert format_value(None, "ms") == "-"
    assert format_value(Failure("boom"), "ms") == "failed"


def test_format_ratio() -> None:
    assert format_ratio(1.234) == "1.23x"
    assert format_ratio(None) == "-"


def test_table_has_both_columns_the_ratio_and_the_note() -> None:
    ours: dict[str, Value] = {"rate": 2000.0, "lat": 2.0, "rss": Failure("worker crashed")}
    node: dict[str, Value] = {"rate": 1000.0, "lat": 4.0, "rss": 80.0}
    table = format_table(METRICS, ours, node)
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "unit", "ours", "Node", "ours", "vs", "Node"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split()[-3:] == ["2,000", "1,000", "2.00x"]
    assert lines[3].split()[-3:] == ["2.00", "4.00", "2.00x"]
    assert lines[4].split()[-3:] == ["failed", "80.0", "-"]
    assert lines[-1] == RATIO_NOTE
    # The numeric columns are right-aligned: every data row has the same width.
    assert len({len(line) for line in lines[2:5]}) == 1


def test_table_marks_a_side_that_was_not_measured() -> None:
    table = format_table(METRICS, {}, {"rate": 5.0})
    assert table.splitlines()[2].split()[-3:] == ["-", "5", "-"]


def test_markdown_table() -> None:
    markdown = format_markdown(METRICS, {"rate": 2000.0}, {"rate": 1000.0})
    lines = markdown.splitlines()
    assert lines[0] == "| metric | unit | ours | Node | ours vs Node |"
    assert lines[2] == "| run 10 jobs | jobs/s | 2,000 | 1,000 | 2.00x |"
    assert lines[3] == "| latency p50 | ms | - | - | - |"


def test_rows_carry_values_ratio_and_errors() -> None:
    rows = build_rows(METRICS, {"rate": 3000.0, "rss": Failure("no")}, {"rate": 1000.0})
    assert rows[0] == {
        "key": "rate",
        "metric": "run 10 jobs",
        "unit": "jobs/s",
        "better": "higher",
        "ours": 3000.0,
        "node": 1000.0,
        "ours_vs_node": 3.0,
        "ours_error": None,
        "node_error": None,
    }
    assert rows[1]["better"] == "lower"
    assert rows[1]["ours"] is None
    assert rows[1]["ours_vs_node"] is None
    assert rows[2]["ours_error"] == "no"


def test_failures_lists_ours_first() -> None:
    found = failures({"a": Failure("x"), "b": 1.0}, {"a": Failure("y")})
    assert found == [
        {"side": "ours", "key": "a", "error": "x"},
        {"side": "node", "key": "a", "error": "y"},
    ]


def test_json_document_is_strict_json() -> None:
    document = json_document(
        config={"jobs": 10},
        machine={"cpu": "test"},
        metrics=METRICS,
        ours={"rate": 1.0, "lat": Failure("timeout")},
        node={"rate": 2.0, "lat": 3.0, "rss": 4.0},
        details={"ours": {"enqueue": []}},
    )
    text = json.dumps(document, allow_nan=False)
    again = json.loads(text)
    assert again["config"] == {"jobs": 10}
    assert again["machine"] == {"cpu": "test"}
    assert [row["key"] for row in again["rows"]] == ["rate", "lat", "rss"]
    assert again["rows"][0]["ours_vs_node"] == 0.5
    assert again["failures"] == [{"side": "ours", "key": "lat", "error": "timeout"}]
    assert again["ratio_note"] == RATIO_NOTE
    assert again["details"] == {"ours": {"enqueue": []}}


def test_variants_table_puts_each_plugin_set_against_the_run_without() -> None:
    values: dict[str, dict[str, Value]] = {
        "ours": {"rate": 2000.0, "lat": 2.0, "rss": 60.0},
        "ours+hooks": {"rate": 1900.0, "lat": 2.5, "rss": Failure("crashed")},
        "ours+tracing": {"rate": 1000.0, "lat": 4.0, "rss": 60.0},
    }
    lines = format_variants(METRICS, values).splitlines()
    assert lines[0].split() == [
        *("metric", "unit", "ours", "ours+hooks", "vs", "ours", "ours+tracing", "vs", "ours")
    ]
    assert lines[2].split()[-5:] == ["2,000", "1,900", "0.95x", "1,000", "0.50x"]
    assert lines[3].split()[-5:] == ["2.00", "2.50", "0.80x", "4.00", "0.50x"]
    assert lines[4].split()[-5:] == ["60.0", "failed", "-", "60.0", "1.00x"]
    assert lines[-1] == VARIANT_NOTE
    markdown = format_variants(METRICS, values, markdown=True).splitlines()
    assert markdown[0] == (
        "| metric | unit | ours | ours+hooks | vs ours | ours+tracing | vs ours |"
    )
    assert markdown[1] == "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    assert markdown[2] == "| run 10 jobs | jobs/s | 2,000 | 1,900 | 0.95x | 1,000 | 0.50x |"
    rows = variant_rows(METRICS, values)
    assert rows[0]["ours+hooks_vs_ours"] == 0.95
    assert rows[2]["ours+hooks_error"] == "crashed"
    json.dumps(rows, allow_nan=False)
