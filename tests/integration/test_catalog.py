"""The installed catalog is Graphile Worker's revision 19 plus the Rust port's revision 20,
object for object.

:data:`EXPECTED_REVISION_19` (what Graphile Worker 0.17 installs) and :data:`EXPECTED` (that
plus the worker-recovery objects of revision 20) are written out by hand from the
specification (and Node's own schema dump); they are not derived from our DDL. ``SCHEMA.``
stands for the quoted schema name.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, pool

from sqlalchemy_graphile import quote_identifier
from sqlalchemy_graphile.migrations import install, uninstall_recovery
from tests._catalog import describe_schema

TZ = "timestamp with time zone"


def column(
    name: str,
    type_: str,
    not_null: bool,
    default: str | None = None,
    *,
    generated: str | None = None,
    identity: str = "",
) -> tuple[str, str, bool, str | None, str | None, str]:
    """One column: name, formatted type, not null, default, generated expression, identity
    (``'a'`` = generated always)."""
    return (name, type_, not_null, default, generated, identity)


def function(
    name: str,
    identity_arguments: str,
    arguments: str,
    result: str,
    *,
    language: str,
    strict: bool = False,
) -> dict[str, Any]:
    """One function; every one of ours is volatile, not security definer, not leakproof,
    parallel unsafe, cost 100, with no settings and no privileges granted."""
    returns_set = result.startswith(("SETOF ", "TABLE("))
    return {
        "name": name,
        "identity_arguments": identity_arguments,
        "arguments": arguments,
        "result": result,
        "returns_set": returns_set,
        "language": language,
        "volatility": "v",
        "strict": strict,
        "security_definer": False,
        "leakproof": False,
        "parallel": "u",
        "cost": 100.0,
        "rows": 1000.0 if returns_set else 0.0,
        "config": None,
        "acl": None,
    }


def identity_sequence(type_: str, owner: str) -> tuple[Any, ...]:
    """type, start, increment, min, max, cache, cycle, owning column, dependency type."""
    maximum = {"integer": 2147483647, "bigint": 9223372036854775807}[type_]
    return (type_, 1, 1, 1, maximum, 1, False, owner, "i")


JOBS_COLUMNS = [
    column("id", "bigint", True, identity="a"),
    column("job_queue_id", "integer", False),
    column("task_id", "integer", True),
    column("payload", "json", True, "'{}'::json"),
    column("priority", "smallint", True, "0"),
    column("run_at", TZ, True, "now()"),
    column("attempts", "smallint", True, "0"),
    column("max_attempts", "smallint", True, "25"),
    column("last_error", "text", False),
    column("created_at", TZ, True, "now()"),
    column("updated_at", TZ, True, "now()"),
    column("key", "text", False),
    column("locked_at", TZ, False),
    column("locked_by", "text", False),
    column("revision", "integer", True, "0"),
    column("flags", "jsonb", False),
    column(
        "is_available",
        "boolean",
        True,
        generated="((locked_at IS NULL) AND (attempts < max_attempts))",
    ),
]

JOBS_VIEW_DEFINITION = """\
 SELECT jobs.id,
    job_queues.queue_name,
    tasks.identifier AS task_identifier,
    jobs.priority,
    jobs.run_at,
    jobs.attempts,
    jobs.max_attempts,
    jobs.last_error,
    jobs.created_at,
    jobs.updated_at,
    jobs.key,
    jobs.locked_at,
    jobs.locked_by,
    jobs.revision,
    jobs.flags
   FROM SCHEMA._private_jobs jobs
     JOIN SCHEMA._private_tasks tasks ON tasks.id = jobs.task_id
     LEFT JOIN SCHEMA._private_job_queues job_queues ON job_queues.id = jobs.job_queue_id;"""

EXPECTED_REVISION_19: dict[str, Any] = {
    "relations": [
        ("_private_job_queues", "r"),
        ("_private_jobs", "r"),
        ("_private_known_crontabs", "r"),
        ("_private_tasks", "r"),
        ("job_queues_id_seq", "S"),
        ("job_queues_pkey1", "i"),
        ("job_queues_queue_name_key", "i"),
        ("job_spec", "c"),
        ("jobs", "v"),
        ("jobs_id_seq1", "S"),
        ("jobs_key_key1", "i"),
        ("jobs_main_index", "i"),
        ("jobs_no_queue_index", "i"),
        ("jobs_pkey1", "i"),
        ("known_crontabs_pkey", "i"),
        ("migrations", "r"),
        ("migrations_pkey", "i"),
        ("tasks_id_seq", "S"),
        ("tasks_identifier_key", "i"),
        ("tasks_pkey", "i"),
    ],
    "tables": {
        "_private_job_queues": {
            "columns": [
                column("id", "integer", True, identity="a"),
                column("queue_name", "text", True),
                column("locked_at", TZ, False),
                column("locked_by", "text", False),
                column("is_available", "boolean", True, generated="(locked_at IS NULL)"),
            ],
            "constraints": [
                ("job_queues_pkey1", "p", "PRIMARY KEY (id)"),
                ("job_queues_queue_name_check", "c", "CHECK ((length(queue_name) <= 128))"),
                ("job_queues_queue_name_key", "u", "UNIQUE (queue_name)"),
            ],
            "indexes": [
                (
                    "job_queues_pkey1",
                    "CREATE UNIQUE INDEX job_queues_pkey1"
                    " ON SCHEMA._private_job_queues USING btree (id)",
                ),
                (
                    "job_queues_queue_name_key",
                    "CREATE UNIQUE INDEX job_queues_queue_name_key"
                    " ON SCHEMA._private_job_queues USING btree (queue_name)",
                ),
            ],
        },
        "_private_jobs": {
            "columns": JOBS_COLUMNS,
            "constraints": [
                ("jobs_key_check", "c", "CHECK (((length(key) > 0) AND (length(key) <= 512)))"),
                ("jobs_key_key1", "u", "UNIQUE (key)"),
                ("jobs_max_attempts_check", "c", "CHECK ((max_attempts >= 1))"),
                ("jobs_pkey1", "p", "PRIMARY KEY (id)"),
            ],
            "indexes": [
                (
                    "jobs_key_key1",
                    "CREATE UNIQUE INDEX jobs_key_key1 ON SCHEMA._private_jobs USING btree (key)",
                ),
                (
                    "jobs_main_index",
                    "CREATE INDEX jobs_main_index ON SCHEMA._private_jobs"
                    " USING btree (priority, run_at) INCLUDE (id, task_id, job_queue_id)"
                    " WHERE (is_available = true)",
                ),
                (
                    "jobs_no_queue_index",
                    "CREATE INDEX jobs_no_queue_index ON SCHEMA._private_jobs"
                    " USING btree (priority, run_at) INCLUDE (id, task_id)"
                    " WHERE ((is_available = true) AND (job_queue_id IS NULL))",
                ),
                (
                    "jobs_pkey1",
                    "CREATE UNIQUE INDEX jobs_pkey1 ON SCHEMA._private_jobs USING btree (id)",
                ),
            ],
        },
        "_private_known_crontabs": {
            "columns": [
                column("identifier", "text", True),
                column("known_since", TZ, True),
                column("last_execution", TZ, False),
            ],
            "constraints": [("known_crontabs_pkey", "p", "PRIMARY KEY (identifier)")],
            "indexes": [
                (
                    "known_crontabs_pkey",
                    "CREATE UNIQUE INDEX known_crontabs_pkey"
                    " ON SCHEMA._private_known_crontabs USING btree (identifier)",
                ),
            ],
        },
        "_private_tasks": {
            "columns": [
                column("id", "integer", True, identity="a"),
                column("identifier", "text", True),
            ],
            "constraints": [
                ("tasks_identifier_check", "c", "CHECK ((length(identifier) <= 128))"),
                ("tasks_identifier_key", "u", "UNIQUE (identifier)"),
                ("tasks_pkey", "p", "PRIMARY KEY (id)"),
            ],
            "indexes": [
                (
                    "tasks_identifier_key",
                    "CREATE UNIQUE INDEX tasks_identifier_key"
                    " ON SCHEMA._private_tasks USING btree (identifier)",
                ),
                (
                    "tasks_pkey",
                    "CREATE UNIQUE INDEX tasks_pkey ON SCHEMA._private_tasks USING btree (id)",
                ),
            ],
        },
        "migrations": {
            "columns": [
                column("id", "integer", True),
                column("ts", TZ, True, "now()"),
                column("breaking", "boolean", True, "false"),
            ],
            "constraints": [("migrations_pkey", "p", "PRIMARY KEY (id)")],
            "indexes": [
                (
                    "migrations_pkey",
                    "CREATE UNIQUE INDEX migrations_pkey ON SCHEMA.migrations USING btree (id)",
                ),
            ],
        },
    },
    "views": {
        "jobs": {
            "columns": [
                ("id", "bigint"),
                ("queue_name", "text"),
                ("task_identifier", "text"),
                ("priority", "smallint"),
                ("run_at", TZ),
                ("attempts", "smallint"),
                ("max_attempts", "smallint"),
                ("last_error", "text"),
                ("created_at", TZ),
                ("updated_at", TZ),
                ("key", "text"),
                ("locked_at", TZ),
                ("locked_by", "text"),
                ("revision", "integer"),
                ("flags", "jsonb"),
            ],
            "definition": JOBS_VIEW_DEFINITION,
        }
    },
    "composite_types": {
        "job_spec": {
            "attributes": [
                ("identifier", "text"),
                ("payload", "json"),
                ("queue_name", "text"),
                ("run_at", TZ),
                ("max_attempts", "smallint"),
                ("job_key", "text"),
                ("priority", "smallint"),
                ("flags", "text[]"),
            ]
        }
    },
    # (enabled, forced): enabled without policies on the private tables, off on the ledger.
    "row_level_security": {
        "_private_job_queues": (True, False),
        "_private_jobs": (True, False),
        "_private_known_crontabs": (True, False),
        "_private_tasks": (True, False),
        "migrations": (False, False),
    },
    "relation_acls": [],
    "sequences": {
        "job_queues_id_seq": identity_sequence("integer", "_private_job_queues.id"),
        "jobs_id_seq1": identity_sequence("bigint", "_private_jobs.id"),
        "tasks_id_seq": identity_sequence("integer", "_private_tasks.id"),
    },
    # (name, typtype, typcategory, relkind of the type's relation)
    "types": [
        ("__private_job_queues", "b", "A", ""),
        ("__private_jobs", "b", "A", ""),
        ("__private_known_crontabs", "b", "A", ""),
        ("__private_tasks", "b", "A", ""),
        ("_job_spec", "b", "A", ""),
        ("_jobs", "b", "A", ""),
        ("_migrations", "b", "A", ""),
        ("_private_job_queues", "c", "C", "r"),
        ("_private_jobs", "c", "C", "r"),
        ("_private_known_crontabs", "c", "C", "r"),
        ("_private_tasks", "c", "C", "r"),
        ("job_spec", "c", "C", "c"),
        ("jobs", "c", "C", "v"),
        ("migrations", "c", "C", "r"),
    ],
    "functions": [
        function(
            "add_job",
            "identifier text, payload json, queue_name text, run_at timestamp with time zone,"
            " max_attempts integer, job_key text, priority integer, flags text[],"
            " job_key_mode text",
            "identifier text, payload json DEFAULT NULL::json,"
            " queue_name text DEFAULT NULL::text,"
            " run_at timestamp with time zone DEFAULT NULL::timestamp with time zone,"
            " max_attempts integer DEFAULT NULL::integer, job_key text DEFAULT NULL::text,"
            " priority integer DEFAULT NULL::integer, flags text[] DEFAULT NULL::text[],"
            " job_key_mode text DEFAULT 'replace'::text",
            "SCHEMA._private_jobs",
            language="plpgsql",
        ),
        function(
            "add_jobs",
            "specs SCHEMA.job_spec[], job_key_preserve_run_at boolean",
            "specs SCHEMA.job_spec[], job_key_preserve_run_at boolean DEFAULT false",
            "SETOF SCHEMA._private_jobs",
            language="plpgsql",
        ),
        function(
            "complete_jobs",
            "job_ids bigint[]",
            "job_ids bigint[]",
            "SETOF SCHEMA._private_jobs",
            language="sql",
        ),
        function(
            "force_unlock_workers",
            "worker_ids text[]",
            "worker_ids text[]",
            "void",
            language="sql",
        ),
        function(
            "permanently_fail_jobs",
            "job_ids bigint[], error_message text",
            "job_ids bigint[], error_message text DEFAULT NULL::text",
            "SETOF SCHEMA._private_jobs",
            language="sql",
        ),
        function(
            "remove_job",
            "job_key text",
            "job_key text",
            "SCHEMA._private_jobs",
            language="plpgsql",
            strict=True,
        ),
        function(
            "reschedule_jobs",
            "job_ids bigint[], run_at timestamp with time zone, priority integer,"
            " attempts integer, max_attempts integer",
            "job_ids bigint[], run_at timestamp with time zone DEFAULT NULL::timestamp with"
            " time zone, priority integer DEFAULT NULL::integer,"
            " attempts integer DEFAULT NULL::integer, max_attempts integer DEFAULT NULL::integer",
            "SETOF SCHEMA._private_jobs",
            language="sql",
        ),
    ],
    "triggers": [],
    "policies": [],
    "comments": [],
    "schema_acl": None,
    # Node's ledger: ids 1..19, breaking = {1, 3, 11, 13, 14, 16, 19}.
    "ledger": [(n, n in {1, 3, 11, 13, 14, 16, 19}) for n in range(1, 20)],
}


def _with_revision_20(revision_19: dict[str, Any]) -> dict[str, Any]:
    """Revision 19 plus the Rust port's revision 20: the ``_private_workers`` registry (no
    row-level security), its heartbeat index, six SQL functions and ledger row (20, false)."""
    expected = {key: value for key, value in revision_19.items()}
    expected["relations"] = sorted(
        [
            *revision_19["relations"],
            ("_private_workers", "r"),
            ("_private_workers_last_heartbeat_at_idx", "i"),
            ("_private_workers_pkey", "i"),
        ]
    )
    expected["tables"] = {
        **revision_19["tables"],
        "_private_workers": {
            "columns": [
                column("id", "text", True),
                column("last_heartbeat_at", TZ, True),
                column("started_at", TZ, True, "now()"),
                column("metadata", "jsonb", False),
            ],
            "constraints": [("_private_workers_pkey", "p", "PRIMARY KEY (id)")],
            "indexes": [
                (
                    "_private_workers_last_heartbeat_at_idx",
                    "CREATE INDEX _private_workers_last_heartbeat_at_idx"
                    " ON SCHEMA._private_workers USING btree (last_heartbeat_at)",
                ),
                (
                    "_private_workers_pkey",
                    "CREATE UNIQUE INDEX _private_workers_pkey"
                    " ON SCHEMA._private_workers USING btree (id)",
                ),
            ],
        },
    }
    expected["tables"] = dict(sorted(expected["tables"].items()))
    expected["row_level_security"] = dict(
        sorted({**revision_19["row_level_security"], "_private_workers": (False, False)}.items())
    )
    expected["types"] = sorted(
        [
            *revision_19["types"],
            ("__private_workers", "b", "A", ""),
            ("_private_workers", "c", "C", "r"),
        ]
    )
    expected["functions"] = sorted(
        [
            *revision_19["functions"],
            function(
                "delete_stale_workers",
                "worker_ids text[]",
                "worker_ids text[]",
                "void",
                language="sql",
            ),
            function(
                "list_orphan_locked_workers",
                "stale_threshold interval",
                "stale_threshold interval",
                "TABLE(worker_id text)",
                language="sql",
            ),
            function(
                "list_stale_workers",
                "stale_threshold interval",
                "stale_threshold interval",
                "TABLE(worker_id text)",
                language="sql",
            ),
            function(
                "recover_dead_worker_jobs",
                "worker_ids text[], recovery_delay interval",
                "worker_ids text[], recovery_delay interval DEFAULT '00:00:00'::interval",
                "integer",
                language="sql",
            ),
            function(
                "worker_deregister",
                "worker_id text",
                "worker_id text",
                "void",
                language="sql",
            ),
            function(
                "worker_heartbeat",
                "worker_id text, metadata json",
                "worker_id text, metadata json DEFAULT NULL::json",
                "void",
                language="sql",
            ),
        ],
        key=lambda f: (f["name"], f["identity_arguments"]),
    )
    expected["ledger"] = [*revision_19["ledger"], (20, False)]
    return expected


#: What we install: revision 19 and the worker-recovery objects of revision 20.
EXPECTED = _with_revision_20(EXPECTED_REVISION_19)


def assert_matches(description: dict[str, Any], expected: dict[str, Any] = EXPECTED) -> None:
    """Compare section by section (for readable failures), then as a whole."""
    assert description.keys() == expected.keys()
    for section, wanted in expected.items():
        assert description[section] == wanted, f"section {section!r} differs"
    assert description == expected


def test_default_schema_catalog_is_revision_20(db: psycopg.Connection) -> None:
    assert_matches(describe_schema(db, "graphile_worker"))


def test_ledger_breaking_flags_match_graphile_worker(db: psycopg.Connection) -> None:
    rows = db.execute(
        "select id from graphile_worker.migrations where breaking order by id"
    ).fetchall()
    assert [row[0] for row in rows] == [1, 3, 11, 13, 14, 16, 19]
    assert db.execute("select max(id) from graphile_worker.migrations").fetchone() == (20,)


def test_removing_revision_20_leaves_exactly_revision_19(empty_db_url: str) -> None:
    engine = create_engine(
        empty_db_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=pool.NullPool
    )
    try:
        with engine.begin() as connection:
            install(connection, "graphile_worker")
            uninstall_recovery(connection, "graphile_worker")
        with psycopg.connect(empty_db_url, autocommit=True) as conn:
            assert_matches(describe_schema(conn, "graphile_worker"), EXPECTED_REVISION_19)
        with engine.begin() as connection:
            assert install(connection, "graphile_worker") is True  # adds 20 back
    finally:
        engine.dispose()
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert_matches(describe_schema(conn, "graphile_worker"))


@pytest.mark.parametrize("schema", ["my_jobs", "Jobs$Q", "select"])
def test_other_schema_names_get_the_same_catalog(empty_db_url: str, schema: str) -> None:
    engine = create_engine(
        empty_db_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=pool.NullPool
    )
    try:
        with engine.begin() as connection:
            assert install(connection, schema) is True
    finally:
        engine.dispose()

    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert_matches(describe_schema(conn, schema))
        schemas = {row[0] for row in conn.execute("select nspname from pg_namespace")}
        assert "graphile_worker" not in schemas
        assert schema in schemas
        # The function bodies name the schema they live in, never the default one.
        bodies = conn.execute(
            "select prosrc from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
            " where n.nspname = %s",
            (schema,),
        ).fetchall()
        assert len(bodies) == 13
        assert all("graphile_worker" not in body for (body,) in bodies)
        # ... and they work there.
        quoted = quote_identifier(schema)
        conn.execute(f"select {quoted}.add_job('probe', queue_name := 'q', job_key := 'k')")
        row = conn.execute(f"select task_identifier, queue_name, key from {quoted}.jobs").fetchone()
        assert row == ("probe", "q", "k")
