from __future__ import annotations

import psycopg


def test_template_has_schema(db: psycopg.Connection) -> None:
    rows = db.execute("select id, breaking from graphile_worker.migrations order by id").fetchall()
    assert [r[0] for r in rows] == list(range(1, 21))
    job = db.execute("select * from graphile_worker.add_job('smoke', '{\"a\":1}')").fetchone()
    assert job is not None
