"""The service's tests: what a sign-up enqueues, and what its job then does, run in the
test's transaction and by a worker."""

from __future__ import annotations

from httpx import ASGITransport, AsyncClient
from signup_service.app import create_app
from signup_service.settings import Settings
from signup_service.tasks import Mailer, SendWelcomeEmail, Services, jobs
from sqlalchemy import URL
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sqlalchemy_graphile import JobSpec, Worker
from sqlalchemy_graphile.testing import assert_enqueued, assert_not_enqueued, run_jobs


class RecordingMailer(Mailer):
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, to: str, subject: str) -> None:
        self.sent.append((to, subject))


async def test_signing_up_enqueues_the_welcome_email(
    client: AsyncClient, session: AsyncSession
) -> None:
    response = await client.post("/signups", json={"email": "ada@example.com"})

    assert response.status_code == 201
    user_id = response.json()["id"]
    [welcome] = await assert_enqueued(
        session, SendWelcomeEmail, user_id=user_id, spec=JobSpec(queue_name="mail")
    )
    assert welcome.payload.email == "ada@example.com"


async def test_a_refused_sign_up_enqueues_nothing(
    client: AsyncClient, session: AsyncSession
) -> None:
    await client.post("/signups", json={"email": "ada@example.com"})
    again = await client.post("/signups", json={"email": "ada@example.com"})

    assert again.status_code == 409
    await assert_enqueued(session, SendWelcomeEmail, count=1)


async def test_nothing_is_enqueued_before_anyone_signs_up(session: AsyncSession) -> None:
    await assert_not_enqueued(session)


async def test_the_welcome_job_runs_in_the_tests_transaction(
    client: AsyncClient, session: AsyncSession, connection: AsyncConnection
) -> None:
    user_id = (await client.post("/signups", json={"email": "ada@example.com"})).json()["id"]
    mailer = RecordingMailer()
    # The task's own sessions use the test's connection too, so it sees the new user.
    sessions = async_sessionmaker(connection, join_transaction_mode="create_savepoint")

    [run] = await run_jobs(session, jobs(), extensions=[Services(sessions, mailer)])

    assert run.status == "completed"
    assert mailer.sent == [("ada@example.com", "Welcome!")]
    session.expire_all()  # the task changed the user through a session of its own
    assert (await client.get(f"/signups/{user_id}")).json()["welcomed"] is True
    await assert_not_enqueued(session)


async def test_the_worker_sends_the_email_and_marks_the_user(test_database: URL) -> None:
    # End to end: the app commits for real and a worker runs the job.
    app = create_app(Settings(database_url=test_database, worker_in_app=False))
    engine = create_async_engine(test_database)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client,
    ):
        user_id = (await client.post("/signups", json={"email": "ada@example.com"})).json()["id"]

        mailer = RecordingMailer()
        services = Services(sessions=app.state.sessions, mailer=mailer)
        await Worker(engine, tasks=jobs(), extensions=[services]).run_once()

        assert mailer.sent == [("ada@example.com", "Welcome!")]
        assert (await client.get(f"/signups/{user_id}")).json()["welcomed"] is True
    async with AsyncSession(engine) as session:
        await assert_not_enqueued(session)
    await engine.dispose()


async def test_the_dashboard_shows_the_queue_to_the_administrator(test_database: URL) -> None:
    settings = Settings(database_url=test_database, worker_in_app=False, dashboard_password="pw")
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client,
    ):
        await client.post("/signups", json={"email": "ada@example.com"})

        assert (await client.get("/jobs/")).status_code == 401
        page = await client.get("/jobs/", auth=("admin", "pw"))
        assert page.status_code == 200
        listed = await client.get("/jobs/jobs", auth=("admin", "pw"))
        assert listed.status_code == 200
        assert "send_welcome_email" in listed.text
