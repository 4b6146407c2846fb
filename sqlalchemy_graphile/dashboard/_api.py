"""The JSON API under ``/api``: the same reads and actions as the pages.

Times are ISO 8601 text, payloads and flags are JSON values. Changes (``POST``) need the
CSRF token of ``GET /api/session`` in an ``X-CSRF-Token`` header, with the cookie that call
set, and are refused by a read-only dashboard.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._actions import ActionRequest
from ._auth import describe
from ._core import Core, jsonable, user_of
from ._cron import cron_rows
from ._filters import Cursor, JobFilter, job_id_param, limit_param
from ._security import CSRF_HEADER, HttpError, read_json, set_csrf_cookie
from ._workers import worker_rows


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(jsonable(data), status_code=status)


async def session(core: Core, request: Request) -> Response:
    """``GET /api/session``: who is signed in, what may be done, and the CSRF token."""
    token, new_nonce = core.csrf.token(request)
    response = _json(
        {
            "user": user_of(request),
            "auth": describe(core.auth),
            "read_only": core.read_only,
            "schema": core.schema,
            "csrf_token": token,
            "csrf_header": CSRF_HEADER,
        }
    )
    set_csrf_cookie(response, request, new_nonce)
    return response


async def overview(core: Core, request: Request) -> Response:
    """``GET /api/overview``: counts by state, per task and queue; throughput per minute."""
    async with core.reading() as connection:
        counts = await core.queries.overview(connection)
    oldest = counts.total.oldest_ready_run_at
    return _json(
        {
            "db_now": counts.db_now,
            "total": counts.total,
            "by_task": counts.by_task,
            "by_queue": counts.by_queue,
            "oldest_ready_age_seconds": None
            if oldest is None
            else (counts.db_now - oldest).total_seconds(),
            "throughput_per_minute": core.sampler.per_minute(counts.db_now),
        }
    )


async def jobs(core: Core, request: Request) -> Response:
    """``GET /api/jobs?state&task&queue&q&limit&cursor``: a page of jobs."""
    params = request.query_params
    job_filter = JobFilter.from_params(params)
    cursor = Cursor.decode(params.get("cursor"), run_order=job_filter.run_order)
    limit = limit_param(params.get("limit"))
    async with core.reading() as connection:
        page = await core.queries.jobs(connection, job_filter, cursor, limit)
    return _json(page)


async def job(core: Core, request: Request) -> Response:
    """``GET /api/jobs/{job_id}``: one job with its whole payload."""
    job_id = job_id_param(request.path_params["job_id"])
    async with core.reading() as connection:
        found = await core.queries.job(connection, job_id)
    if found is None:
        raise HttpError(404, f"There is no job {job_id}.")
    data = jsonable(found)
    data["payload"] = found.payload
    del data["payload_json"]
    return _json(data)


async def queues(core: Core, request: Request) -> Response:
    """``GET /api/queues``: named queues with their locks and job counts."""
    async with core.reading() as connection:
        page = await core.queries.queues(connection, 500)
    return _json(page)


async def cron(core: Core, request: Request) -> Response:
    """``GET /api/cron``: cron items with their last execution and next run."""
    async with core.reading() as connection:
        known = await core.queries.known_crontabs(connection)
        now = await core.queries.db_now(connection)
    return _json({"db_now": now, "items": cron_rows(core.crontab, known, now)})


async def workers(core: Core, request: Request) -> Response:
    """``GET /api/workers``: heartbeats (``heartbeats_installed`` says whether the table
    exists) and the worker ids holding locks."""
    async with core.reading() as connection:
        holders = await core.queries.lock_holders(connection)
        beats = await core.queries.heartbeats(connection)
        now = await core.queries.db_now(connection)
    return _json(
        {
            "db_now": now,
            "heartbeats_installed": beats is not None,
            "workers": worker_rows(holders, beats),
        }
    )


async def act(core: Core, request: Request) -> Response:
    """``POST /api/actions/{action}``: carry out an action; the body says on what."""
    if core.read_only:
        raise HttpError(403, "This dashboard is read-only: it makes no changes.")
    core.csrf.verify(request, request.headers.get(CSRF_HEADER))
    body = await read_json(request)
    outcome = await core.actions.run(ActionRequest.from_json(request.path_params["action"], body))
    return _json(outcome, 200 if outcome.ok else 409)
