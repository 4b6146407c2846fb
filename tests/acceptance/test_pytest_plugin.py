"""The pytest plugin as a user's project meets it: small test suites of a made-up app, run
by pytest in a subprocess (pytester) against the real database, on psycopg 3, psycopg2 and
asyncpg, with and without xdist, running jobs in the tests' transactions with run_jobs and
next to a real worker process."""

from __future__ import annotations

import textwrap

import psycopg
import pytest

from sqlalchemy_graphile.testing import install_schema

from .._user_projects import RUN_TIMEOUT, clean_environment, postgresql_options, write_files

APP = {
    "myapp/__init__.py": "",
    "myapp/models.py": """
        from sqlalchemy import String
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


        class Base(DeclarativeBase):
            pass


        class User(Base):
            __tablename__ = "users"
            id: Mapped[int] = mapped_column(primary_key=True)
            email: Mapped[str] = mapped_column(String, unique=True)
    """,
    "myapp/tasks.py": """
        import json
        import os
        from typing import ClassVar

        from sqlalchemy_graphile import BatchTask, Task, WorkerContext


        def record(ctx: WorkerContext, payloads: list[dict]) -> None:
            with open(os.environ["RAN_LOG"], "a") as log:
                log.write(json.dumps({"job_id": ctx.job.id, "payloads": payloads}) + "\\n")


        class SendWelcome(Task):
            IDENTIFIER: ClassVar[str] = "send_welcome"
            user_id: int
            email: str

            async def run(self, ctx: WorkerContext) -> None:
                record(ctx, [self.model_dump()])


        class Audit(BatchTask):
            IDENTIFIER: ClassVar[str] = "audit"
            event: str

            @classmethod
            async def run_batch(cls, items: list["Audit"], ctx: WorkerContext) -> None:
                record(ctx, [item.model_dump() for item in items])
    """,
    "myapp/signup.py": """
        from sqlalchemy.ext.asyncio import AsyncSession
        from sqlalchemy.orm import Session

        from sqlalchemy_graphile import AsyncJobHelpers, JobHelpers, JobSpec

        from .models import User
        from .tasks import Audit, SendWelcome


        def sign_up(session: Session, email: str) -> User:
            user = User(email=email)
            session.add(user)
            session.flush()
            helpers = JobHelpers(session)
            welcome = SendWelcome(user_id=user.id, email=email)
            helpers.add_job(welcome, JobSpec(queue_name="mail", job_key=f"welcome:{user.id}"))
            helpers.add_batch_job([Audit(event=f"signup:{email}")], JobSpec(job_key="audit"))
            session.commit()
            return user


        async def sign_up_async(session: AsyncSession, email: str) -> User:
            user = User(email=email)
            session.add(user)
            await session.flush()
            helpers = AsyncJobHelpers(session)
            welcome = SendWelcome(user_id=user.id, email=email)
            await helpers.add_job(welcome, JobSpec(queue_name="mail", job_key=f"welcome:{user.id}"))
            await helpers.add_batch_job([Audit(event=f"signup:{email}")], JobSpec(job_key="audit"))
            await session.commit()
            return user
    """,
}

# The tests a user writes with the plugin; the conftest.py of each suite below supplies
# `session` (psycopg 3 and psycopg2) and `async_session` (asyncpg) in an outer transaction.
SIGN_UP_TESTS = """
    from sqlalchemy import func, select

    from sqlalchemy_graphile import JobSpec
    from sqlalchemy_graphile.testing import (
        assert_enqueued,
        assert_not_enqueued,
        enqueued_jobs,
        run_jobs,
    )

    from myapp.models import User
    from myapp.signup import sign_up, sign_up_async
    from myapp.tasks import Audit, SendWelcome


    def test_sign_up_enqueues_a_welcome_and_an_audit_item(session):
        user = sign_up(session, "ada@example.com")
        [welcome] = assert_enqueued(
            session, SendWelcome, email="ada@example.com", spec=JobSpec(queue_name="mail")
        )
        assert welcome.payload == SendWelcome(user_id=user.id, email="ada@example.com")
        assert welcome.job.key == f"welcome:{user.id}"
        assert_enqueued(session, Audit, event="signup:ada@example.com")
        assert_not_enqueued(session, SendWelcome, email="bob@example.com")


    def test_two_sign_ups_share_one_audit_batch(session):
        sign_up(session, "ada@example.com")
        sign_up(session, "bob@example.com")
        items = assert_enqueued(session, Audit, count=2)
        assert [item.payload.event for item in items] == [
            "signup:ada@example.com",
            "signup:bob@example.com",
        ]
        assert items[0].job.id == items[1].job.id
        assert [entry.payload.email for entry in enqueued_jobs(session, SendWelcome)] == [
            "ada@example.com",
            "bob@example.com",
        ]


    async def test_an_async_sign_up_is_seen_through_the_async_session(async_session):
        user = await sign_up_async(async_session, "ada@example.com")
        [welcome] = await assert_enqueued(async_session, SendWelcome, user_id=user.id)
        assert welcome.payload.email == "ada@example.com"
        await assert_not_enqueued(async_session, "send_welcome", email="bob@example.com")


    def test_every_test_starts_without_jobs_or_users(session):
        assert_not_enqueued(session)
        assert session.scalar(select(func.count()).select_from(User)) == 0


    def test_the_jobs_run_in_the_tests_transaction(session, tmp_path, monkeypatch):
        monkeypatch.setenv("RAN_LOG", str(tmp_path / "ran.jsonl"))
        sign_up(session, "ada@example.com")
        runs = run_jobs(session, [SendWelcome, Audit])
        assert [(run.job.task_identifier, run.status) for run in runs] == [
            ("send_welcome", "completed"),
            ("audit", "completed"),
        ]
        assert len((tmp_path / "ran.jsonl").read_text().splitlines()) == 2
        assert_not_enqueued(session)


    async def test_the_jobs_run_in_the_async_sessions_transaction(
        async_session, tmp_path, monkeypatch
    ):
        monkeypatch.setenv("RAN_LOG", str(tmp_path / "ran.jsonl"))
        await sign_up_async(async_session, "ada@example.com")
        await sign_up_async(async_session, "bob@example.com")
        runs = await run_jobs(async_session, [SendWelcome, Audit], limit=2)
        assert [run.job.payload["email"] for run in runs] == ["ada@example.com", "bob@example.com"]
        [audit] = await run_jobs(async_session, [SendWelcome, Audit])
        assert len(audit.job.payload) == 2, "one batch job held both sign-ups' audit items"
        await assert_not_enqueued(async_session)
"""

INI = """
    [pytest]
    addopts = -p no:cacheprovider
    asyncio_mode = auto
    asyncio_default_fixture_loop_scope = function
    asyncio_default_test_loop_scope = function
    filterwarnings = error
    timeout = 60
    graphile_worker_plugin = true
"""

# Outer-transaction fixtures, shared by the suites below.
SESSION_FIXTURES = """
    @pytest.fixture(params=["psycopg", "psycopg2"])
    def session(request, engine_url):
        engine = create_engine(engine_url.set(drivername=f"postgresql+{request.param}"))
        with engine.connect() as connection:
            transaction = connection.begin()
            with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
                yield session
            transaction.rollback()
        engine.dispose()


    @pytest.fixture
    async def async_session(engine_url):
        engine = create_async_engine(engine_url.set(drivername="postgresql+asyncpg"))
        async with engine.connect() as connection:
            transaction = await connection.begin()
            async with AsyncSession(
                bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
            ) as session:
                yield session
            await transaction.rollback()
        await engine.dispose()
"""

FIXTURE_IMPORTS = """
    import os

    import pytest
    from sqlalchemy import create_engine, make_url
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from sqlalchemy.orm import Session
"""

# pytest-postgresql's template databases: the schema goes into the template of the process
# fixture, which is named `postgresql_proc` as pytest-postgresql's own (the plugin's
# default), and every test gets a fresh copy.
TEMPLATE_CONFTEST = (
    FIXTURE_IMPORTS
    + """
    from pytest_postgresql import factories

    from sqlalchemy_graphile.testing import database_url
    from myapp.models import Base


    def create_tables(**connection):
        engine = create_engine(database_url(**connection).set(drivername="postgresql+psycopg"))
        Base.metadata.create_all(engine)
        engine.dispose()


    postgresql_proc = factories.postgresql_noproc(
        dbname=f"sg_plugin_{os.getpid()}", load=[create_tables]
    )
    postgresql = factories.postgresql("postgresql_proc")


    @pytest.fixture
    def engine_url(graphile_worker_database, postgresql):
        info = postgresql.info
        return database_url(host=info.host, port=info.port, user=info.user, dbname=info.dbname)
"""
    + SESSION_FIXTURES
)

# One database for the whole run, given by URL (its tables already made), each test in a
# transaction that is rolled back.
SHARED_URL_CONFTEST = (
    FIXTURE_IMPORTS
    + """
    @pytest.fixture(scope="session")
    def graphile_worker_database_url():
        return os.environ["APP_TEST_DATABASE_URL"]


    @pytest.fixture
    def engine_url(graphile_worker_database):
        return make_url(graphile_worker_database)
"""
    + SESSION_FIXTURES
)

WORKER_TEST = """
    import json
    import os
    import subprocess
    import sys

    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from sqlalchemy_graphile.testing import assert_enqueued, assert_not_enqueued

    from myapp.signup import sign_up
    from myapp.tasks import Audit, SendWelcome


    def test_the_worker_runs_the_jobs_the_test_asserted(engine_url, tmp_path):
        engine = create_engine(engine_url.set(drivername="postgresql+psycopg"))
        with Session(engine) as session:
            sign_up(session, "ada@example.com")  # committed: a worker can see it
        with engine.connect() as connection:
            [welcome] = assert_enqueued(connection, SendWelcome, email="ada@example.com")
            [audit] = assert_enqueued(connection, Audit, event="signup:ada@example.com")

        log = tmp_path / "ran.jsonl"
        url = engine_url.render_as_string(hide_password=False)
        worker = [sys.executable, "-m", "sqlalchemy_graphile", "-c", url]
        subprocess.run(
            [*worker, "run", "--once", "--no-migrate", "--tasks", "myapp.tasks"],
            env={**os.environ, "RAN_LOG": str(log)},
            check=True,
            timeout=60,
        )
        ran = [json.loads(line) for line in log.read_text().splitlines()]
        assert sorted(ran, key=lambda r: r["job_id"]) == [
            {"job_id": welcome.job.id, "payloads": [welcome.payload.model_dump()]},
            {"job_id": audit.job.id, "payloads": [audit.payload.model_dump()]},
        ]
        with engine.connect() as connection:
            assert_not_enqueued(connection)
        engine.dispose()
"""


@pytest.fixture
def user_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project directory holding ``myapp`` and a pytest.ini, in a clean environment."""
    clean_environment(monkeypatch)
    pytester.makeini(INI)
    write_files(pytester.path, {path: textwrap.dedent(text) for path, text in APP.items()})
    return pytester


@pytest.mark.parametrize("xdist", [["-p", "no:xdist"], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_suite_on_pytest_postgresql_templates_with_a_real_worker(
    user_project: pytest.Pytester, request: pytest.FixtureRequest, xdist: list[str]
) -> None:
    user_project.makeconftest(TEMPLATE_CONFTEST)
    user_project.makepyfile(test_sign_up=SIGN_UP_TESTS, test_worker=WORKER_TEST)
    result = user_project.runpytest_subprocess(
        *xdist, *postgresql_options(request.config), timeout=RUN_TIMEOUT
    )
    # Four sync tests on two drivers, two async tests, one with a worker process.
    result.assert_outcomes(passed=11)


def test_a_suite_in_rolled_back_transactions_on_one_database_with_xdist(
    user_project: pytest.Pytester, empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as db:  # the app's own migrations
        db.execute("create table users (id serial primary key, email text unique not null)")
    monkeypatch.setenv("APP_TEST_DATABASE_URL", empty_db_url)
    user_project.makeconftest(SHARED_URL_CONFTEST)
    user_project.makepyfile(test_sign_up=SIGN_UP_TESTS)
    # Both xdist workers install the schema into the same database at start-up.
    result = user_project.runpytest_subprocess("-n", "2", timeout=RUN_TIMEOUT)
    result.assert_outcomes(passed=10)
    with psycopg.connect(empty_db_url) as db:
        assert db.execute("select count(*) from graphile_worker.jobs").fetchone() == (0,)
        assert db.execute("select count(*) from users").fetchone() == (0,)


def test_a_failed_assertion_shows_the_tests_line_and_the_queue(
    user_project: pytest.Pytester, empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_schema(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as db:
        db.execute("create table users (id serial primary key, email text unique not null)")
    monkeypatch.setenv("APP_TEST_DATABASE_URL", empty_db_url)
    user_project.makeconftest(SHARED_URL_CONFTEST)
    user_project.makepyfile(
        test_failing="""
        from sqlalchemy_graphile.testing import assert_enqueued
        from myapp.signup import sign_up, sign_up_async
        from myapp.tasks import SendWelcome

        def test_expects_another_address(session):
            sign_up(session, "ada@example.com")
            assert_enqueued(session, SendWelcome, email="bob@example.com")

        async def test_expects_another_address_async(async_session):
            await sign_up_async(async_session, "ada@example.com")
            await assert_enqueued(async_session, SendWelcome, email="bob@example.com")
        """
    )
    result = user_project.runpytest_subprocess("-p", "no:xdist", timeout=RUN_TIMEOUT)
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            '>       assert_enqueued(session, SendWelcome, email="bob@example.com")',
            "E       AssertionError: expected at least one 'send_welcome' job (SendWelcome)"
            " with email='bob@example.com'; found 0.",
            "E       The 'send_welcome' jobs in the queue (1):",
            "E         job *: SendWelcome(user_id=*, email='ada@example.com'), queue 'mail',"
            " key 'welcome:*'",
            "E       Other jobs in the queue: 'audit': 1.",
            '>       await assert_enqueued(async_session, SendWelcome, email="bob@example.com")',
        ]
    )
    assert "_enqueued.py" not in result.stdout.str(), "the helpers' frames are hidden"


ACTIVATION_TEST = """
    import os
    import sys

    import pytest


    def test_the_plugin_is_on_only_when_enabled(request):
        enabled = os.environ["EXPECT_PLUGIN"] == "1"
        assert ("sqlalchemy_graphile" in sys.modules) is enabled
        if enabled:
            assert request.getfixturevalue("graphile_worker_schema") == "graphile_worker"
        else:
            with pytest.raises(pytest.FixtureLookupError):
                request.getfixturevalue("graphile_worker_schema")
"""


@pytest.mark.parametrize(
    ("way", "enabled"),
    [
        ("installed only", False),
        ("ini option", True),
        ("pytest_plugins in conftest.py", True),
        ("-p on the command line", True),
        ("-p with plugin autoloading off", True),
    ],
)
def test_the_plugin_is_active_only_when_a_project_turns_it_on(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, way: str, enabled: bool
) -> None:
    clean_environment(monkeypatch)
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("EXPECT_PLUGIN", "1" if enabled else "0")
    pytester.makeini(
        "[pytest]\naddopts = -p no:cacheprovider\n"
        + ("graphile_worker_plugin = true\n" if way == "ini option" else "")
    )
    if way == "pytest_plugins in conftest.py":
        pytester.makeconftest('pytest_plugins = ["sqlalchemy_graphile.pytest_plugin"]')
    arguments = []
    if way.startswith("-p"):
        arguments = ["-p", "sqlalchemy_graphile.pytest_plugin"]
    if way == "-p with plugin autoloading off":
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_activation=ACTIVATION_TEST)
    result = pytester.runpytest_subprocess(*arguments, "--trace-config", timeout=RUN_TIMEOUT)
    result.assert_outcomes(passed=1)
    # The entry point is there whenever autoloading is on, enabled or not.
    entry_point_loaded = "_sqlalchemy_graphile_pytest.py" in result.stdout.str()
    assert entry_point_loaded is (way != "-p with plugin autoloading off")


def test_without_a_database_url_the_plugin_says_what_to_override(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_environment(monkeypatch)
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\ngraphile_worker_plugin = true\n")
    pytester.makepyfile(
        test_database="def test_needs_the_schema(graphile_worker_database):\n    pass\n"
    )
    # Without pytest-postgresql's fixtures (its plugin is blocked here).
    result = pytester.runpytest_subprocess("-p", "no:pytest_postgresql", timeout=RUN_TIMEOUT)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*override the graphile_worker_database_url fixture in your conftest.py*"]
    )


def test_the_plugin_installs_the_schema_the_fixture_names(
    user_project: pytest.Pytester, empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_TEST_DATABASE_URL", empty_db_url)
    user_project.makeconftest(
        """
        import os

        import pytest
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session

        # Turned on here as well as in pytest.ini: the plugin is loaded once.
        pytest_plugins = ["sqlalchemy_graphile.pytest_plugin"]


        @pytest.fixture(scope="session")
        def graphile_worker_schema():
            return "app_jobs"


        @pytest.fixture(scope="session")
        def graphile_worker_database_url():
            return os.environ["APP_TEST_DATABASE_URL"]
        """
    )
    user_project.makepyfile(
        test_schema="""
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session

        from sqlalchemy_graphile import JobHelpers
        from sqlalchemy_graphile.testing import assert_enqueued
        from myapp.tasks import SendWelcome


        def test_jobs_go_to_the_named_schema(graphile_worker_database, graphile_worker_schema):
            engine = create_engine(graphile_worker_database)
            with engine.connect() as connection, connection.begin():
                helpers = JobHelpers(Session(bind=connection), schema=graphile_worker_schema)
                helpers.add_job(SendWelcome(user_id=1, email="ada@example.com"))
                assert_enqueued(connection, SendWelcome, schema="app_jobs", user_id=1)
            engine.dispose()
        """
    )
    result = user_project.runpytest_subprocess("-p", "no:xdist", timeout=RUN_TIMEOUT)
    result.assert_outcomes(passed=1)
    with psycopg.connect(empty_db_url) as db:
        installed = db.execute("select to_regclass('app_jobs._private_jobs') is not null")
        assert installed.fetchone() == (True,)
        assert db.execute("select to_regnamespace('graphile_worker')").fetchone() == (None,)
