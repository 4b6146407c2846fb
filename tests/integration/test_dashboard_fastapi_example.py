"""``examples/dashboard_fastapi.py``: the dashboard mounted in FastAPI, behind the
application's own rule for administrators."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import httpx
import psycopg

from .._dashboard_support import add_job

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dashboard_fastapi.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboard_fastapi_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_dashboard_answers_administrators_only(
    db_url: str, db: psycopg.Connection
) -> None:
    job_id = add_job(db, "send_invoice")
    app = _example().create_app(db_url)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="https://shop.example") as http,
    ):
        assert (await http.get("/jobs/")).status_code == 403
        http.cookies.set("session", "demo-user")
        assert (await http.get("/jobs/")).status_code == 403
        assert (await http.get("/admin/whoami")).status_code == 403
        http.cookies.set("session", "demo-admin")
        assert (await http.get("/admin/whoami")).json() == {"admin": "ada"}
        page = await http.get("/jobs/jobs")
        assert page.status_code == 200
        assert f'href="/jobs/jobs/{job_id}"' in page.text
        assert "send_invoice" in page.text
        detail = await http.get(f"/jobs/api/jobs/{job_id}")
        assert detail.json()["task_identifier"] == "send_invoice"
