"""The HTML pages: server-rendered, readable without JavaScript.

Every change takes two steps: a ``GET /confirm?action=...`` page that says what will happen
to which jobs (and changes nothing), and the ``POST /actions/{action}`` its form sends, with
the CSRF token, which answers with the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ._actions import ACTIONS, EXPLANATIONS, JOB_ACTIONS, ActionRequest
from ._core import Core, base_path, user_of
from ._cron import cron_rows
from ._filters import (
    COUNTED_STATES,
    STATES,
    BadRequest,
    Cursor,
    JobFilter,
    job_id_param,
    limit_param,
    text_param,
)
from ._render import chart, link
from ._security import CSRF_FIELD, HttpError, read_form, set_csrf_cookie
from ._workers import worker_rows

#: Task identifiers and queue names offered as filter suggestions.
_SUGGESTIONS = 500
#: Named queues the queues page lists.
_QUEUES_SHOWN = 500


def render(
    core: Core,
    request: Request,
    template: str,
    *,
    section: str,
    status: int = 200,
    live: bool = False,
    **context: Any,
) -> Response:
    """A page of the dashboard with the shared frame (navigation, user, read-only badge)."""
    token, new_nonce = core.csrf.token(request)
    base = base_path(request)
    html = core.renderer.render(
        template,
        {
            "base": base,
            "link": lambda path, params=None: link(base, path, params),
            "title": core.title,
            "schema": core.schema,
            "user": user_of(request),
            "read_only": core.read_only,
            "section": section,
            "refresh": core.refresh_seconds if live else 0,
            "csrf_field": CSRF_FIELD,
            "csrf_token": token,
            "actions": ACTIONS,
            **context,
        },
    )
    response = HTMLResponse(html, status_code=status)
    set_csrf_cookie(response, request, new_nonce)
    return response


def error_page(core: Core, request: Request, status: int, message: str) -> Response:
    """An error page within the frame."""
    return render(core, request, "error.html", section="", status=status, message=message)


async def overview(core: Core, request: Request) -> Response:
    """``GET /``: counts by state, per task and queue, the oldest ready job, throughput."""
    async with core.reading() as connection:
        counts = await core.queries.overview(connection)
    samples = core.sampler.samples
    oldest = counts.total.oldest_ready_run_at
    return render(
        core,
        request,
        "overview.html",
        section="overview",
        live=True,
        counts=counts,
        states=COUNTED_STATES,
        now=counts.db_now,
        oldest_ready_seconds=None if oldest is None else (counts.db_now - oldest).total_seconds(),
        chart=chart(core.sampler.per_minute(counts.db_now)),
        sampling_since=samples[0].db_now if samples else None,
    )


async def jobs(core: Core, request: Request) -> Response:
    """``GET /jobs``: the jobs list, filtered, one keyset page at a time."""
    params = request.query_params
    job_filter = JobFilter.from_params(params)
    cursor = Cursor.decode(params.get("cursor"), run_order=job_filter.run_order)
    limit = limit_param(params.get("limit"))
    async with core.reading() as connection:
        page = await core.queries.jobs(connection, job_filter, cursor, limit)
        names = await core.queries.names(connection, _SUGGESTIONS)
        now = page.jobs[0].db_now if page.jobs else await core.queries.db_now(connection)
    filter_params = job_filter.params()
    limit_params = {} if limit == limit_param(None) else {"limit": str(limit)}
    return render(
        core,
        request,
        "jobs.html",
        section="jobs",
        live=True,
        page=page,
        job_filter=job_filter,
        filter_params=filter_params,
        states=STATES,
        names=names,
        now=now,
        first_page=cursor is None,
        next_params={**filter_params, **limit_params, "cursor": page.next_cursor},
        first_params={**filter_params, **limit_params},
        limit=limit,
        job_actions=JOB_ACTIONS,
    )


async def job(core: Core, request: Request) -> Response:
    """``GET /jobs/{job_id}``: one job, payload and lock included."""
    job_id = job_id_param(request.path_params["job_id"])
    async with core.reading() as connection:
        found = await core.queries.job(connection, job_id)
    if found is None:
        raise HttpError(404, f"There is no job {job_id}: it was completed, removed or never added.")
    return render(core, request, "job.html", section="jobs", live=True, job=found, now=found.db_now)


async def queues(core: Core, request: Request) -> Response:
    """``GET /queues``: named queues, which are locked, by whom and since when."""
    async with core.reading() as connection:
        page = await core.queries.queues(connection, _QUEUES_SHOWN)
        now = await core.queries.db_now(connection)
    return render(core, request, "queues.html", section="queues", live=True, page=page, now=now)


async def cron(core: Core, request: Request) -> Response:
    """``GET /cron``: cron items: identifier, pattern, last execution, next run."""
    async with core.reading() as connection:
        known = await core.queries.known_crontabs(connection)
        now = await core.queries.db_now(connection)
    rows = cron_rows(core.crontab, known, now)
    return render(
        core,
        request,
        "cron.html",
        section="cron",
        live=True,
        rows=rows,
        now=now,
        crontab_given=bool(core.crontab),
    )


async def workers(core: Core, request: Request) -> Response:
    """``GET /workers``: heartbeats (where installed) and lock holders."""
    async with core.reading() as connection:
        holders = await core.queries.lock_holders(connection)
        beats = await core.queries.heartbeats(connection)
        now = await core.queries.db_now(connection)
    return render(
        core,
        request,
        "workers.html",
        section="workers",
        live=True,
        rows=worker_rows(holders, beats),
        heartbeats_installed=beats is not None,
        now=now,
    )


def _refuse_if_read_only(core: Core) -> None:
    if core.read_only:
        raise HttpError(403, "This dashboard is read-only: it makes no changes.")


def _multi(params: Any) -> dict[str, list[str]]:
    return {key: params.getlist(key) for key in params}


async def confirm(core: Core, request: Request) -> Response:
    """``GET /confirm?action=...``: what an action will do, and the form that does it."""
    _refuse_if_read_only(core)
    params = _multi(request.query_params)
    action = (params.get("action") or [""])[0]
    if action not in ACTIONS:
        raise BadRequest(f"unknown action {action!r}")
    context: dict[str, Any] = {"action": action, "explanation": EXPLANATIONS[action]}
    async with core.reading() as connection:
        if action in JOB_ACTIONS:
            context.update(await _job_targets(core, connection, params))
        elif action == "remove-by-key":
            key = text_param((params.get("key") or [""])[0], "key")
            if key is None:
                raise BadRequest("give the key of the job to remove")
            found = await core.queries.job_by_key(connection, key)
            if found is None:
                raise HttpError(404, f"No job has the key {key!r}.")
            context.update(key=key, job=found)
        else:
            worker_ids = [w for w in params.get("worker", []) if w]
            if not worker_ids:
                raise BadRequest("give the id of the worker to unlock")
            holders = [
                h for h in await core.queries.lock_holders(connection) if h.worker_id in worker_ids
            ]
            beats = await core.queries.heartbeats(connection)
            context.update(
                worker_ids=[text_param(w, "worker id") for w in worker_ids],
                workers=worker_rows(holders, [b for b in beats or [] if b.worker_id in worker_ids]),
            )
        context["now"] = await core.queries.db_now(connection)
    return render(core, request, "confirm.html", section="jobs", **context)


async def _job_targets(
    core: Core, connection: AsyncConnection, params: Mapping[str, list[str]]
) -> dict[str, Any]:
    if (params.get("select") or [""])[0] == "filter":
        job_filter = JobFilter.from_params({k: v[0] for k, v in params.items() if v})
        count, max_id = await core.queries.count_matching(connection, job_filter)
        return {"job_filter": job_filter, "count": count, "max_id": max_id, "ids": [], "job": None}
    ids = sorted({job_id_param(v) for v in params.get("id", []) if v})
    if not ids:
        raise BadRequest("no jobs chosen: tick some jobs, or choose all jobs matching the filter")
    found = await core.queries.job(connection, ids[0]) if len(ids) == 1 else None
    return {"job_filter": None, "count": len(ids), "max_id": None, "ids": ids, "job": found}


async def act(core: Core, request: Request) -> Response:
    """``POST /actions/{action}``: carry out a confirmed action and show its result."""
    _refuse_if_read_only(core)
    form = await read_form(request)
    given = form.get(CSRF_FIELD)
    core.csrf.verify(request, given[0] if given else None)
    action_request = ActionRequest.from_form(request.path_params["action"], form)
    outcome = await core.actions.run(action_request)
    back = _back_link(action_request, outcome.done)
    return render(
        core,
        request,
        "result.html",
        section="jobs",
        status=200 if outcome.ok else 409,
        outcome=outcome,
        back=back,
    )


def _back_link(request: ActionRequest, done: list[int]) -> tuple[str, dict[str, str]]:
    if request.action == "force-unlock":
        return "/workers", {}
    if request.job_filter is not None:
        return "/jobs", request.job_filter.params()
    if len(request.ids) == 1 and request.action != "complete" and done:
        return f"/jobs/{request.ids[0]}", {}
    return "/jobs", {}
