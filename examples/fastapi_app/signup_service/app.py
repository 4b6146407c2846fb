"""The web app: ``uvicorn --factory signup_service.app:create_app``.

``POST /signups`` writes the user and enqueues the welcome email in one transaction: both
are committed together, or neither is. ``GET /signups/{id}`` says whether the email went.
With ``DASHBOARD_PASSWORD`` set, ``/jobs/`` serves the job queue's dashboard.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from sqlalchemy_graphile import AsyncJobHelpers, JobSpec, Worker
from sqlalchemy_graphile.dashboard import BasicAuth, dashboard_app

from .database import SessionDependency, prepare
from .models import User
from .settings import Settings
from .tasks import Mailer, SendWelcomeEmail, Services, jobs

router = APIRouter()


class SignUp(BaseModel):
    email: str


class SignedUp(BaseModel):
    id: int
    email: str
    welcomed: bool


@router.post("/signups", status_code=201)
async def sign_up(body: SignUp, session: SessionDependency) -> SignedUp:
    user = User(email=body.email)
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise HTTPException(status_code=409, detail="this address has signed up already") from None
    await AsyncJobHelpers(session).add_job(
        SendWelcomeEmail(user_id=user.id, email=user.email),
        JobSpec(queue_name="mail", job_key=f"welcome:{user.id}"),
    )
    await session.commit()
    return SignedUp(id=user.id, email=user.email, welcomed=False)


@router.get("/signups/{user_id}")
async def signed_up(user_id: int, session: SessionDependency) -> SignedUp:
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail="no such sign-up")
    return SignedUp(id=user.id, email=user.email, welcomed=user.welcomed_at is not None)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app. Its lifespan opens the database and, with ``WORKER_IN_APP=1``, runs a worker
    beside the web server until the server shuts down (uvicorn handles the signals). With
    ``DASHBOARD_PASSWORD``, the dashboard is mounted at ``/jobs`` on the same engine."""
    settings = settings or Settings.from_environment()
    engine = create_async_engine(settings.database_url)  # connects on first use
    dashboard = (
        dashboard_app(engine, auth=BasicAuth("admin", settings.dashboard_password))
        if settings.dashboard_password
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(engine.dispose)
            if dashboard is not None:
                stack.push_async_callback(dashboard.close)  # a mount gets no lifespan
            await prepare(engine)
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            app.state.sessions = sessions
            if settings.worker_in_app:
                worker = Worker(
                    engine,
                    tasks=jobs(),
                    concurrency=4,
                    extensions=[Services(sessions=sessions, mailer=Mailer())],
                    handle_signals=False,
                )
                await stack.enter_async_context(worker)  # stopped gracefully on the way out
            yield

    app = FastAPI(title="Sign-ups", lifespan=lifespan)
    app.include_router(router)
    if dashboard is not None:
        app.mount("/jobs", dashboard)
    return app
