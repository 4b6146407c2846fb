"""The dashboard's pure parts: request parameters, cursors, search patterns, throughput per
minute, the chart, next cron runs, host checks, action requests and the CLI's options."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.requests import Request

from sqlalchemy_graphile import CronItem
from sqlalchemy_graphile.cli._parser import parse_args
from sqlalchemy_graphile.dashboard import BasicAuth, NoAuth
from sqlalchemy_graphile.dashboard._actions import ActionRequest
from sqlalchemy_graphile.dashboard._auth import Refusal, authenticate, is_loopback_host
from sqlalchemy_graphile.dashboard._cron import next_run
from sqlalchemy_graphile.dashboard._filters import (
    BadRequest,
    Cursor,
    JobFilter,
    case_matters,
    like_pattern,
    limit_param,
    search_id,
)
from sqlalchemy_graphile.dashboard._queries import JobCounters
from sqlalchemy_graphile.dashboard._render import chart, duration, relative
from sqlalchemy_graphile.dashboard._sampler import ThroughputSampler

T0 = datetime(2030, 1, 2, 3, 4, 0, tzinfo=UTC)


def test_job_filter_from_params() -> None:
    assert JobFilter.from_params({}) == JobFilter()
    given = JobFilter.from_params({"state": "failed", "task": "t", "queue": "", "q": "  x  "})
    assert given == JobFilter("failed", "t", None, "x")
    assert given.params() == {"state": "failed", "task": "t", "q": "x"}
    assert given.describe() == "state failed, task 't', search 'x'"
    assert JobFilter().describe() == "all jobs"
    assert JobFilter("ready").run_order
    assert not JobFilter("failed").run_order
    for bad in ({"state": "done"}, {"task": "a\x00"}, {"q": "x" * 513}, {"queue": 5}):
        with pytest.raises(BadRequest):
            JobFilter.from_params(bad)


@pytest.mark.parametrize(
    "cursor",
    [
        Cursor(7),
        Cursor(2**63 - 1),
        Cursor(12, -32768, datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        Cursor(12, 5, datetime(1960, 1, 1, tzinfo=UTC)),
    ],
)
def test_cursors_round_trip(cursor: Cursor) -> None:
    text = cursor.encode()
    assert Cursor.decode(text, run_order=cursor.run_at is not None) == cursor


@pytest.mark.parametrize(
    ("text", "run_order"),
    [
        ("x", False),
        ("i0", False),
        ("i-1", False),
        ("i99999999999999999999", False),
        ("r1.2.3", False),
        ("i5", True),
        ("r99999.0.1", True),
        ("r1.999999999999999999.1", True),
        ("r1.2", True),
    ],
)
def test_bad_cursors(text: str, run_order: bool) -> None:
    with pytest.raises(BadRequest):
        Cursor.decode(text, run_order=run_order)


def test_search_helpers() -> None:
    assert like_pattern("50%_a\\b") == "%50\\%\\_a\\\\b%"
    assert case_matters("Ada")
    assert case_matters("zoë")
    assert not case_matters("77-@.")
    assert not case_matters("日本")
    assert search_id("42") == 42
    assert search_id("0") is None
    assert search_id("4x") is None
    assert search_id("9" * 20) is None
    assert limit_param(None) == 50
    assert limit_param("500") == 500
    with pytest.raises(BadRequest):
        limit_param("-1")


def _sampler(*samples: tuple[float, int, int]) -> ThroughputSampler:
    async def never() -> JobCounters:
        raise AssertionError("not read")

    sampler = ThroughputSampler(never, 10)
    for seconds, inserted, deleted in samples:
        sampler.add(JobCounters(T0 + timedelta(seconds=seconds), inserted, deleted))
    return sampler


def test_throughput_spreads_each_gap_over_its_minutes() -> None:
    # 120 deletes between 0:30 and 2:30 (two minutes): 30 + 60 + 30 per minute.
    sampler = _sampler((30, 0, 0), (150, 12, 120))
    rates = sampler.per_minute(T0 + timedelta(seconds=150), minutes=4)
    assert [r.start for r in rates] == [T0 + timedelta(minutes=m) for m in range(-1, 3)]
    assert [r.completed for r in rates] == [None, 30.0, 60.0, 30.0]
    assert [r.added for r in rates] == [None, 3.0, 6.0, 3.0]


def test_throughput_skips_a_counter_reset_and_old_samples() -> None:
    sampler = _sampler((0, 0, 100), (60, 0, 5), (120, 0, 65))
    rates = sampler.per_minute(T0 + timedelta(seconds=120), minutes=3)
    assert [r.completed for r in rates] == [None, 60.0, None]
    sampler.add(JobCounters(T0 + timedelta(hours=3), 0, 70))
    assert len(sampler.samples) == 1  # older than the window: dropped
    sampler.add(JobCounters(T0, 0, 0))  # out of order: ignored
    sampler.add(JobCounters(T0 + timedelta(hours=4), None, None))  # no statistics: ignored
    assert len(sampler.samples) == 1


def test_chart_geometry() -> None:
    sampler = _sampler((0, 0, 0), (60, 30, 10), (120, 30, 40))
    drawn = chart(sampler.per_minute(T0 + timedelta(seconds=120), minutes=3), width=300, height=100)
    assert drawn.has_data
    assert drawn.peak == 30
    assert [round(b.height) for b in drawn.bars] == [30, 90, 0]
    assert drawn.total_completed == 40
    assert drawn.total_added == 30
    assert drawn.line.count(",") == 2  # the two covered minutes
    assert not chart(_sampler().per_minute(T0, minutes=3)).has_data


def test_durations() -> None:
    assert duration(5) == "5 s"
    assert duration(-125) == "2 min"
    assert duration(3 * 3600 + 5 * 60) == "3 h 5 min"
    assert duration(2 * 86400 + 4 * 3600) == "2 d 4 h"
    assert duration(400 * 86400) == "1 year"
    assert duration(1000 * 365 * 86400) == "1000 years"
    assert relative(T0 + timedelta(minutes=3), T0) == "in 3 min"
    assert relative(T0 - timedelta(hours=2), T0) == "2 h ago"
    assert relative(None, T0) == ""


@pytest.mark.parametrize(
    ("pattern", "after", "expected"),
    [
        ("* * * * *", T0, T0 + timedelta(minutes=1)),
        ("30 4 * * *", T0, T0.replace(hour=4, minute=30)),
        ("0 3 * * *", T0, (T0 + timedelta(days=1)).replace(hour=3, minute=0)),
        ("0 0 29 2 *", T0, datetime(2032, 2, 29, tzinfo=UTC)),
        ("0 12 * * 0", T0, datetime(2030, 1, 6, 12, tzinfo=UTC)),  # a Sunday
        ("0 12 13 * 5", T0, datetime(2030, 1, 4, 12, tzinfo=UTC)),  # Friday OR the 13th
        ("*/15 * * * *", T0 + timedelta(seconds=30), T0.replace(minute=15)),
    ],
)
def test_next_run_of_a_pattern(pattern: str, after: datetime, expected: datetime) -> None:
    assert next_run(CronItem("t", pattern), after) == expected


def test_next_run_of_a_match_function() -> None:
    soon = CronItem("t", lambda d: d.minute == 10, identifier="soon")
    assert next_run(soon, T0) == T0.replace(minute=10)
    never = CronItem("t", lambda d: False, identifier="never")
    assert next_run(never, T0) is None


def _request(client: str, host: str, headers: dict[str, str] | None = None) -> Request:
    raw = [(b"host", host.encode())] + [
        (k.lower().encode(), v.encode()) for k, v in (headers or {}).items()
    ]
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": raw,
        "client": (client, 1234),
        "query_string": b"",
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("app.localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("localhost.evil.example", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


async def test_no_auth_needs_a_loopback_client_and_host() -> None:
    assert await authenticate(NoAuth(), _request("127.0.0.1", "127.0.0.1:5678")) == "local user"
    assert await authenticate(NoAuth(), _request("::1", "[::1]:5678")) == "local user"
    assert await authenticate(NoAuth(), _request("::1", "localhost")) == "local user"
    for client, host in (("10.0.0.2", "127.0.0.1:5678"), ("127.0.0.1", "evil.example:5678")):
        refusal = await authenticate(NoAuth(), _request(client, host))
        assert isinstance(refusal, Refusal)
        assert refusal.status == 403


async def test_basic_auth_compares_both_parts() -> None:
    auth = BasicAuth("admin", "pa:ss")

    def header(user: str, password: str) -> dict[str, str]:
        encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {encoded}"}

    assert await authenticate(auth, _request("1.2.3.4", "h", header("admin", "pa:ss"))) == "admin"
    for user, password in (("admin", "pa"), ("Admin", "pa:ss"), ("", "")):
        refused = await authenticate(auth, _request("1.2.3.4", "h", header(user, password)))
        assert isinstance(refused, Refusal)
        assert refused.status == 401


def test_action_requests_from_forms() -> None:
    request = ActionRequest.from_form(
        "reschedule", {"id": ["3", "4"], "run_at": ["2030-01-02T03:04"], "priority": [""]}
    )
    assert request.ids == (3, 4)
    assert request.run_at == datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    assert request.priority is None
    by_filter = ActionRequest.from_form(
        "retry", {"select": ["filter"], "id": ["3"], "state": ["failed"], "max_id": ["9"]}
    )
    assert by_filter.ids == ()
    assert by_filter.job_filter == JobFilter("failed")
    assert by_filter.max_id == 9
    with pytest.raises(BadRequest):
        ActionRequest.from_form("retry", {"id": [str(n) for n in range(1, 502)]})


def test_dashboard_command_options() -> None:
    args = parse_args(["dashboard"])
    defaults = (args.host, args.port, args.auth, args.user, args.read_only, args.crontab)
    assert defaults == ("127.0.0.1", 5678, "none", "admin", False, None)
    args = parse_args(
        ["dashboard", "--host", "::1", "--port", "0", "--auth", "basic", "--read-only"]
    )
    assert (args.host, args.port, args.auth, args.read_only) == ("::1", 0, "basic", True)
    assert args.handler == "dashboard.serve"


@pytest.mark.parametrize(
    "argv",
    [
        ["dashboard", "--port", "70000"],
        ["dashboard", "--port", "x"],
        ["dashboard", "--auth", "header"],
    ],
)
def test_bad_dashboard_options(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    assert "usage" in capsys.readouterr().err
