"""The dashboard's protections: sign-in modes, CSRF tokens, read-only mode, hardening
headers, escaping of everything shown, and filters that stay data."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from sqlalchemy_graphile.dashboard import (
    BasicAuth,
    BearerAuth,
    DashboardApp,
    NoAuth,
    TrustMountingApp,
    dashboard_app,
)
from sqlalchemy_graphile.errors import (
    ConfigurationError,
    InvalidCallbackError,
    InvalidIdentifierError,
)

from .._dashboard_support import add_job, client, escaped, fail, lock

_PAGES = ("/", "/jobs", "/queues", "/cron", "/workers")
_HARDENING = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


@pytest.fixture
async def app(db_url: str) -> AsyncIterator[DashboardApp]:
    made = dashboard_app(db_url, sample_interval=3600)
    yield made
    await made.close()


def _assert_hardened(response: httpx.Response) -> None:
    for name, value in _HARDENING.items():
        assert response.headers[name] == value, (response.url, name)
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy


async def test_every_response_is_hardened(app: DashboardApp, db: psycopg.Connection) -> None:
    job_id = add_job(db, "a")
    paths = [
        *_PAGES,
        f"/jobs/{job_id}",
        "/api/overview",
        "/api/session",
        "/static/dashboard.css",
        "/static/dashboard.js",
        "/static/nothing.txt",
        "/no/such/page",
        "/jobs?state=bogus",
    ]
    async with client(app) as http:
        for path in paths:
            _assert_hardened(await http.get(path))
        _assert_hardened(await http.post("/api/actions/retry", json={"ids": [job_id]}))
    async with client(app, base_url="http://evil.example") as http:
        _assert_hardened(await http.get("/"))  # a refusal too


async def test_without_sign_in_only_loopback_is_served(app: DashboardApp) -> None:
    async with client(app) as http:
        assert (await http.get("/")).status_code == 200
    async with client(app, base_url="http://localhost:5678") as http:
        assert (await http.get("/")).status_code == 200
    # A remote client, or a page that points some DNS name at 127.0.0.1 (rebinding).
    remote = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
    async with httpx.AsyncClient(transport=remote, base_url="http://127.0.0.1") as http:
        refused = await http.get("/")
        assert refused.status_code == 403
        assert "only answers requests from this machine" in refused.text
    async with client(app, base_url="http://rebound.example:5678") as http:
        assert (await http.get("/api/overview")).status_code == 403


async def test_basic_auth(db_url: str) -> None:
    app = dashboard_app(db_url, auth=BasicAuth("admin", "s3cret-ü"), sample_interval=3600)
    remote = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
    try:
        async with httpx.AsyncClient(transport=remote, base_url="https://jobs.example") as http:
            for path in ("/", "/api/overview", "/static/dashboard.css"):
                missing = await http.get(path)
                assert missing.status_code == 401, path
                assert missing.headers["www-authenticate"].startswith("Basic realm=")
            wrong = await http.get("/", auth=("admin", "nope"))
            assert wrong.status_code == 401
            garbled = await http.get("/", headers={"Authorization": "Basic %%%"})
            assert garbled.status_code == 401
            ok = await http.get("/", auth=("admin", "s3cret-ü"))
            assert ok.status_code == 200
            assert '<span class="user data">admin</span>' in ok.text
            assert "secure" in ok.headers["set-cookie"].lower()  # over https
            session = await http.get("/api/session", auth=("admin", "s3cret-ü"))
            assert session.json()["auth"] == "basic"
    finally:
        await app.close()


async def test_bearer_auth(db_url: str) -> None:
    app = dashboard_app(db_url, auth=BearerAuth("t0ken-abc"), sample_interval=3600)
    try:
        async with client(app, base_url="http://jobs.example") as http:
            assert (await http.get("/api/overview")).status_code == 401
            wrong = await http.get("/api/overview", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            basic = base64.b64encode(b"a:t0ken-abc").decode()
            assert (
                await http.get("/api/overview", headers={"Authorization": f"Basic {basic}"})
            ).status_code == 401
            ok = await http.get("/api/overview", headers={"Authorization": "Bearer t0ken-abc"})
            assert ok.status_code == 200
    finally:
        await app.close()


class _SignedIn(BaseHTTPMiddleware):
    """A mounting app's own sign-in: a session cookie names the user."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        request.scope["app_user"] = {"s-ada": "ada", "s-bob": "bob"}.get(
            request.cookies.get("session", "")
        )
        return await call_next(request)


def _admins_only(request: Request) -> str | None:
    user = request.scope.get("app_user")
    return user if user == "ada" else None


async def test_trust_the_mounting_app(db_url: str) -> None:
    dashboard = dashboard_app(db_url, auth=TrustMountingApp(_admins_only), sample_interval=3600)
    parent = Starlette(routes=[Mount("/jobs", dashboard)], middleware=[Middleware(_SignedIn)])
    remote = httpx.ASGITransport(app=parent, client=("203.0.113.7", 5000))
    try:
        async with httpx.AsyncClient(transport=remote, base_url="http://app.example") as http:
            assert (await http.get("/jobs/")).status_code == 403
            http.cookies.set("session", "s-bob")
            assert (await http.get("/jobs/")).status_code == 403
            http.cookies.set("session", "s-ada")
            session = await http.get("/jobs/api/session")
            assert "path=/jobs" in session.headers["set-cookie"].lower()
            page = await http.get("/jobs/")
            assert page.status_code == 200
            assert 'href="/jobs/jobs"' in page.text  # links know where it is mounted
            assert 'href="/jobs/static/dashboard.css"' in page.text
            assert '<span class="user data">ada</span>' in page.text
            assert (await http.get("/jobs/static/dashboard.js")).status_code == 200
    finally:
        await dashboard.close()


async def _token(http: httpx.AsyncClient) -> str:
    token: str = (await http.get("/api/session")).json()["csrf_token"]
    return token


async def test_every_change_needs_the_csrf_token(app: DashboardApp, db: psycopg.Connection) -> None:
    job_id = add_job(db, "a")
    fail(db, job_id)
    body = {"ids": [job_id]}
    async with client(app) as http:
        token = await _token(http)
        assert (await http.post("/api/actions/retry", json=body)).status_code == 403
        wrong = await http.post("/api/actions/retry", json=body, headers={"X-CSRF-Token": "0" * 64})
        assert wrong.status_code == 403
        cross_site = await http.post(
            "/api/actions/retry",
            json=body,
            headers={"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"},
        )
        assert cross_site.status_code == 403
        form = await http.post("/actions/retry", data={"id": str(job_id)})
        assert form.status_code == 403
        assert "security token is missing" in form.text
        stolen_cookie = http.cookies.get("sg_dashboard_csrf")
    # A token is bound to its cookie: another browser's token does not fit this cookie.
    async with client(app) as other:
        other_token = await _token(other)
        other.cookies.set("sg_dashboard_csrf", stolen_cookie or "")
        mixed = await other.post(
            "/api/actions/retry", json=body, headers={"X-CSRF-Token": other_token}
        )
        assert mixed.status_code == 403
    row = db.execute(
        "select attempts from graphile_worker._private_jobs where id = %s", (job_id,)
    ).fetchone()
    assert row == (25,)  # nothing changed
    async with client(app) as http:
        ok = await http.post(
            "/api/actions/retry", json=body, headers={"X-CSRF-Token": await _token(http)}
        )
        assert ok.status_code == 200


async def test_processes_with_one_secret_accept_each_other_s_tokens(
    db_url: str, db: psycopg.Connection
) -> None:
    job_id = add_job(db, "a")
    secret = b"the same 32 bytes for every node"
    first = dashboard_app(db_url, secret=secret, sample_interval=3600)
    second = dashboard_app(db_url, secret=secret, sample_interval=3600)
    third = dashboard_app(db_url, sample_interval=3600)  # a secret of its own
    try:
        async with client(first) as http:
            token = await _token(http)
            cookie = http.cookies.get("sg_dashboard_csrf") or ""
        for other, status in ((second, 200), (third, 403)):
            async with client(other, cookies={"sg_dashboard_csrf": cookie}) as http:
                answer = await http.post(
                    "/api/actions/run-now", json={"ids": [job_id]}, headers={"X-CSRF-Token": token}
                )
                assert answer.status_code == status
    finally:
        for app in (first, second, third):
            await app.close()


async def test_request_bodies_are_checked(app: DashboardApp) -> None:
    async with client(app) as http:
        headers = {"X-CSRF-Token": await _token(http)}
        as_form = await http.post("/api/actions/retry", data={"ids": "1"}, headers=headers)
        assert as_form.status_code == 400
        huge = await http.post(
            "/api/actions/retry",
            content=b'{"ids": [' + b"1," * 200_000 + b"1]}",
            headers={**headers, "Content-Type": "application/json"},
        )
        assert huge.status_code == 400
        assert "larger than" in huge.json()["error"]
        not_json = await http.post(
            "/api/actions/retry",
            content=b"{",
            headers={**headers, "Content-Type": "application/json"},
        )
        assert not_json.status_code == 400


async def test_read_only_hides_and_refuses_actions(db_url: str, db: psycopg.Connection) -> None:
    job_id = add_job(db, "a", job_key="k")
    fail(db, job_id)
    lock(db, add_job(db, "b", queue_name="q"), "worker-z")
    app = dashboard_app(db_url, read_only=True, sample_interval=3600)
    try:
        async with client(app) as http:
            for path in (*_PAGES, f"/jobs/{job_id}"):
                page = await http.get(path)
                assert page.status_code == 200, path
                assert "/confirm" not in page.text, path
                assert "<form" not in page.text or 'role="search"' in page.text, path
                assert "read-only" in page.text
            confirm = await http.get("/confirm", params={"action": "retry", "id": str(job_id)})
            assert confirm.status_code == 403
            token = await _token(http)
            assert (await http.get("/api/session")).json()["read_only"] is True
            api = await http.post(
                "/api/actions/retry", json={"ids": [job_id]}, headers={"X-CSRF-Token": token}
            )
            assert api.status_code == 403
            form = await http.post("/actions/retry", data={"id": str(job_id), "csrf_token": token})
            assert form.status_code == 403
            assert "read-only" in form.text
    finally:
        await app.close()
    row = db.execute(
        "select attempts from graphile_worker._private_jobs where id = %s", (job_id,)
    ).fetchone()
    assert row == (25,)


_XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
_UNICODE = "zoë ✓ 日本 \u202egnp.exe \U0001f600 e\u0301"


async def test_everything_shown_is_escaped(app: DashboardApp, db: psycopg.Connection) -> None:
    job_id = add_job(
        db,
        f"task{_XSS}",
        payload=json.dumps({"html": _XSS, "text": _UNICODE}),
        queue_name=f"queue{_XSS}"[:128],
        job_key=f"key{_XSS}",
        flags=[f"flag{_XSS}"],
    )
    lock(db, job_id, f"worker{_XSS}")
    other = add_job(db, "plain")
    fail(db, other, f"Error: {_XSS} {_UNICODE}")
    db.execute(
        "insert into graphile_worker._private_known_crontabs (identifier, known_since) "
        "values (%s, now())",
        (f"cron{_XSS}",),
    )
    async with client(app) as http:
        pages = [
            *_PAGES,
            f"/jobs/{job_id}",
            f"/jobs/{other}",
            "/jobs?" + urlencode({"q": _XSS}),
            "/confirm?" + urlencode({"action": "remove-by-key", "key": f"key{_XSS}"}),
            "/confirm?" + urlencode({"action": "force-unlock", "worker": f"worker{_XSS}"}),
        ]
        for path in pages:
            page = await http.get(path)
            assert page.status_code == 200, (path, page.text)
            assert "<script>alert" not in page.text, path
            assert "<img src=x" not in page.text, path
            assert re.search(r"<script(?! src=)", page.text) is None, path
        detail = (await http.get(f"/jobs/{other}")).text
        assert escaped(f"Error: {_XSS} {_UNICODE}") in detail
        shown = (await http.get(f"/jobs/{job_id}")).text
        assert escaped(_UNICODE) in shown
        assert escaped(f"worker{_XSS}") in shown
        data = (await http.get(f"/api/jobs/{job_id}")).json()
    assert data["payload"] == {"html": _XSS, "text": _UNICODE}
    assert data["task_identifier"] == f"task{_XSS}"


async def test_filters_are_data_not_sql(app: DashboardApp, db: psycopg.Connection) -> None:
    add_job(db, "a")
    hostile = [
        "'; drop table graphile_worker._private_jobs; --",
        "%') or 1=1 --",
        "$$; select 1; $$",
        "\\'",
        ":limit",
        "%(pattern)s",
    ]
    async with client(app) as http:
        for text in hostile:
            for name in ("q", "task", "queue"):
                response = await http.get("/api/jobs", params={name: text})
                assert response.status_code == 200, (name, text, response.text)
                assert response.json()["jobs"] == [], (name, text)
    row = db.execute("select count(*) from graphile_worker._private_jobs").fetchone()
    assert row == (1,)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"schema": 'x"; drop schema public; --'}, InvalidIdentifierError),
        ({"auth": "none"}, ConfigurationError),
        ({"sample_interval": 0}, ConfigurationError),
        ({"refresh_seconds": -1}, ConfigurationError),
        ({"statement_timeout": True}, ConfigurationError),
        ({"secret": b"short"}, ConfigurationError),
        ({"crontab": "not a crontab"}, ConfigurationError),
    ],
)
def test_bad_options_are_refused_before_connecting(
    options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        dashboard_app("postgresql://nobody@127.0.0.1:1/none", **options)


def test_bad_auth_settings_are_refused() -> None:
    for make in (
        lambda: BasicAuth("", "x"),
        lambda: BasicAuth("a:b", "x"),
        lambda: BasicAuth("a", ""),
        lambda: BearerAuth(""),
        lambda: BearerAuth("has space"),
    ):
        with pytest.raises(ConfigurationError):
            make()
    with pytest.raises(InvalidCallbackError):
        TrustMountingApp("not callable")  # type: ignore[arg-type]
    assert NoAuth() == NoAuth()
    assert "password" not in repr(BasicAuth("a", "password"))


def test_a_sync_engine_is_refused() -> None:
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(ConfigurationError, match="AsyncEngine"):
        dashboard_app(engine)  # type: ignore[arg-type]
