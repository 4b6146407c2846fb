"""examples/alembic_app: an application whose own Alembic history includes our revisions.

Each test works on a copy of the example (autogenerate writes files, and one test edits the
app's models), runs the real ``alembic`` command against a fresh database, and looks at the
database and at the generated scripts.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from sqlalchemy_graphile.migrations import BASE_REVISION, HEAD_REVISION, VERSION_LOCATION
from tests._catalog import describe_schema
from tests.integration.test_alembic import ALEMBIC, alembic_environment, alembic_three_at_once
from tests.integration.test_catalog import EXPECTED

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "alembic_app"


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A copy of the example application."""
    copy = tmp_path / "alembic_app"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def alembic(app: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*ALEMBIC, "-c", str(app / "alembic.ini"), *args],
        cwd=app.parent,
        env=alembic_environment(url),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def autogenerate(app: Path, url: str, message: str, *, keep: bool = True) -> str:
    """Run ``alembic revision --autogenerate`` and return the new script's text; with
    ``keep=False`` the script is deleted again (the database stays at head)."""
    before = set((app / "versions").glob("*.py"))
    alembic(app, url, "revision", "--autogenerate", "-m", message)
    (script,) = set((app / "versions").glob("*.py")) - before
    text = script.read_text()
    if not keep:
        script.unlink()
    return text


def operations(script: str) -> list[str]:
    """The ``op.*`` lines of a generated script."""
    return [line.strip() for line in script.splitlines() if line.strip().startswith("op.")]


def test_the_example_points_alembic_at_both_histories() -> None:
    ini = (EXAMPLE / "alembic.ini").read_text()
    assert f"version_locations = %(here)s/versions {VERSION_LOCATION}" in ini
    assert "path_separator = space" in ini
    first = (EXAMPLE / "versions" / "app0001_create_users.py").read_text()
    assert f'down_revision = "{BASE_REVISION}"' in first
    merge = (EXAMPLE / "versions" / "app0002_merge_worker_recovery.py").read_text()
    assert f'down_revision = ("app0001", "{HEAD_REVISION}")' in merge


def test_upgrade_head_installs_our_schema_and_the_app_tables(app: Path, empty_db_url: str) -> None:
    result = alembic(app, empty_db_url, "upgrade", "head")
    assert result.stderr.index("-> gw0019") < result.stderr.index("gw0019 -> app0001")
    assert result.stderr.index("gw0019 -> gw0020") < result.stderr.index("-> app0002")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert describe_schema(conn, "graphile_worker") == EXPECTED
        assert conn.execute("select version_num from alembic_version").fetchall() == [("app0002",)]
        conn.execute("insert into users (email) values ('ada@example.com')")
        conn.execute("select graphile_worker.add_job('welcome', '{\"user_id\": 1}')")

    result = alembic(app, empty_db_url, "heads")
    assert result.stdout.split() == ["app0002", "(graphile_worker)", "(head)"]

    alembic(app, empty_db_url, "downgrade", "base")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        rows = conn.execute(
            "select nspname from pg_namespace where nspname = 'graphile_worker'"
            " union all select relname::text from pg_class where relname = 'users'"
        ).fetchall()
        assert rows == []


def test_autogenerate_leaves_our_schema_alone(app: Path, empty_db_url: str) -> None:
    alembic(app, empty_db_url, "upgrade", "head")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        # Something the app's own include_object hook must hide, too.
        conn.execute("create table tmp_scratch (id integer)")

    script = autogenerate(app, empty_db_url, "nothing to do", keep=False)
    assert operations(script) == []
    assert "graphile_worker" not in script

    # The same run with the hooks switched off proposes to drop our tables: the check above
    # is not vacuous.
    env_py = app / "migrations" / "env.py"
    source = env_py.read_text()
    assert source.count("include_object=include_object,") == 2
    env_py.write_text(source.replace("include_object=include_object,", "include_object=None,"))
    unfiltered = autogenerate(app, empty_db_url, "unfiltered")
    assert "op.drop_table('_private_jobs', schema='graphile_worker')" in operations(unfiltered)
    assert "op.drop_table('tmp_scratch')" in operations(unfiltered)


def test_autogenerate_proposes_changes_to_the_app_models(app: Path, empty_db_url: str) -> None:
    alembic(app, empty_db_url, "upgrade", "head")
    models = app / "userapp" / "models.py"
    source = models.read_text()
    anchor = "    email: Mapped[str] = mapped_column(Text, unique=True)\n"
    assert anchor in source
    models.write_text(
        source.replace(
            anchor, anchor + "    display_name: Mapped[str | None] = mapped_column(Text)\n"
        )
    )

    script = autogenerate(app, empty_db_url, "add display name")
    assert operations(script) == [
        "op.add_column('users', sa.Column('display_name', sa.Text(), nullable=True))",
        "op.drop_column('users', 'display_name')",
    ]
    assert "graphile_worker" not in script

    # The new revision applies on top of the combined history.
    alembic(app, empty_db_url, "upgrade", "head")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) from information_schema.columns"
            " where table_name = 'users' and column_name = 'display_name'"
        ).fetchone()
        assert row == (1,)


def test_concurrent_upgrades_of_the_example(app: Path, empty_db_url: str) -> None:
    errors = alembic_three_at_once(
        "-c", str(app / "alembic.ini"), "upgrade", "head", url=empty_db_url, cwd=app.parent
    )
    assert sum("gw0019 -> app0001" in stderr for stderr in errors) == 1
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert conn.execute("select version_num from alembic_version").fetchall() == [("app0002",)]
        assert describe_schema(conn, "graphile_worker") == EXPECTED
