"""Describe an installed job queue schema from the PostgreSQL catalog.

:func:`describe_schema` returns a plain, comparable description of every object in one
schema: tables (columns, constraints, indexes, row-level security), the view, sequences,
types, functions (signatures and attributes, not bodies), triggers, policies, comments,
privileges and the ``migrations`` ledger. Names qualified with the schema are rewritten to
``SCHEMA.``, so installs under different schema names compare equal.

The integration tests compare it with an expected description written out by hand; the
compatibility tests compare it with what Graphile Worker (Node) installs.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

#: What a schema-qualified name looks like in a description.
PLACEHOLDER = "SCHEMA"

_RELATIONS = """
select c.oid, c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity, c.relacl::text
  from pg_class c
 where c.relnamespace = %(ns)s
 order by c.relname
"""

_COLUMNS = """
select a.attname,
       format_type(a.atttypid, a.atttypmod),
       a.attnotnull,
       case when a.attgenerated = '' then pg_get_expr(d.adbin, d.adrelid) end,
       case when a.attgenerated <> '' then pg_get_expr(d.adbin, d.adrelid) end,
       a.attidentity
  from pg_attribute a
  left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
 where a.attrelid = %(oid)s and a.attnum > 0 and not a.attisdropped
 order by a.attnum
"""

_CONSTRAINTS = """
select conname, contype, pg_get_constraintdef(oid)
  from pg_constraint
 where conrelid = %(oid)s
 order by conname
"""

_INDEXES = """
select ic.relname, pg_get_indexdef(i.indexrelid)
  from pg_index i
  join pg_class ic on ic.oid = i.indexrelid
 where i.indrelid = %(oid)s
 order by ic.relname
"""

_SEQUENCES = """
select c.relname,
       format_type(s.seqtypid, null),
       s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
       owner.relname || '.' || a.attname,
       d.deptype
  from pg_sequence s
  join pg_class c on c.oid = s.seqrelid
  left join pg_depend d
    on d.classid = 'pg_class'::regclass and d.objid = c.oid
   and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')
  left join pg_class owner on owner.oid = d.refobjid
  left join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
 where c.relnamespace = %(ns)s
 order by c.relname
"""

_TYPES = """
select t.typname, t.typtype, t.typcategory, coalesce(r.relkind, '')
  from pg_type t
  left join pg_class r on r.oid = t.typrelid
 where t.typnamespace = %(ns)s
 order by t.typname
"""

_FUNCTIONS = """
select p.proname,
       pg_get_function_identity_arguments(p.oid),
       pg_get_function_arguments(p.oid),
       pg_get_function_result(p.oid),
       p.proretset,
       l.lanname,
       p.provolatile,
       p.proisstrict,
       p.prosecdef,
       p.proleakproof,
       p.proparallel,
       p.procost,
       p.prorows,
       p.proconfig,
       p.proacl::text
  from pg_proc p
  join pg_language l on l.oid = p.prolang
 where p.pronamespace = %(ns)s
 order by p.proname, 2
"""

_TRIGGERS = """
select c.relname, t.tgname
  from pg_trigger t
  join pg_class c on c.oid = t.tgrelid
 where c.relnamespace = %(ns)s
 order by 1, 2
"""

_POLICIES = """
select c.relname, p.polname
  from pg_policy p
  join pg_class c on c.oid = p.polrelid
 where c.relnamespace = %(ns)s
 order by 1, 2
"""

_COMMENTS = """
select d.classoid::regclass::text, d.objsubid, d.description
  from pg_description d
 where d.objoid = %(ns)s
    or d.objoid in (select oid from pg_class where relnamespace = %(ns)s)
    or d.objoid in (select oid from pg_proc where pronamespace = %(ns)s)
    or d.objoid in (select oid from pg_type where typnamespace = %(ns)s)
    or d.objoid in (
      select oid from pg_constraint
       where connamespace = %(ns)s
    )
 order by 1, 2, 3
"""


def _relation(conn: psycopg.Connection, oid: int, relkind: str) -> dict[str, Any]:
    columns = [tuple(row) for row in conn.execute(_COLUMNS, {"oid": oid})]
    if relkind == "v":
        definition = conn.execute("select pg_get_viewdef(%s::oid, true)", (oid,)).fetchone()
        assert definition is not None
        return {
            "columns": [(name, type_) for name, type_, *_ in columns],
            "definition": definition[0],
        }
    if relkind == "c":
        return {"attributes": [(name, type_) for name, type_, *_ in columns]}
    return {
        "columns": columns,
        "constraints": [tuple(row) for row in conn.execute(_CONSTRAINTS, {"oid": oid})],
        "indexes": [tuple(row) for row in conn.execute(_INDEXES, {"oid": oid})],
    }


def _describe(conn: psycopg.Connection, ns: int) -> dict[str, Any]:
    relations = conn.execute(_RELATIONS, {"ns": ns}).fetchall()
    description: dict[str, Any] = {
        "relations": [(name, kind) for _, name, kind, *_ in relations],
        "tables": {},
        "views": {},
        "composite_types": {},
        "row_level_security": {
            name: (enabled, forced)
            for _, name, kind, enabled, forced, _ in relations
            if kind == "r"
        },
        "relation_acls": [(name, acl) for _, name, _, _, _, acl in relations if acl is not None],
    }
    sections = {"r": "tables", "v": "views", "c": "composite_types"}
    for oid, name, kind, *_ in relations:
        if kind in sections:
            description[sections[kind]][name] = _relation(conn, oid, kind)
    description["sequences"] = {
        row[0]: tuple(row[1:]) for row in conn.execute(_SEQUENCES, {"ns": ns})
    }
    description["types"] = [tuple(row) for row in conn.execute(_TYPES, {"ns": ns})]
    description["functions"] = [
        {
            "name": row[0],
            "identity_arguments": row[1],
            "arguments": row[2],
            "result": row[3],
            "returns_set": row[4],
            "language": row[5],
            "volatility": row[6],
            "strict": row[7],
            "security_definer": row[8],
            "leakproof": row[9],
            "parallel": row[10],
            "cost": float(row[11]),
            "rows": float(row[12]),
            "config": row[13],
            "acl": row[14],
        }
        for row in conn.execute(_FUNCTIONS, {"ns": ns})
    ]
    description["triggers"] = [tuple(row) for row in conn.execute(_TRIGGERS, {"ns": ns})]
    description["policies"] = [tuple(row) for row in conn.execute(_POLICIES, {"ns": ns})]
    description["comments"] = [tuple(row) for row in conn.execute(_COMMENTS, {"ns": ns})]
    return description


def _replace_schema(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(PLACEHOLDER + ".", value)
    if isinstance(value, tuple):
        return tuple(_replace_schema(v, pattern) for v in value)
    if isinstance(value, list):
        return [_replace_schema(v, pattern) for v in value]
    if isinstance(value, dict):
        return {k: _replace_schema(v, pattern) for k, v in value.items()}
    return value


def describe_schema(conn: psycopg.Connection, schema: str) -> dict[str, Any]:
    """Describe every object in ``schema`` (which must exist), with the schema name replaced
    by :data:`PLACEHOLDER`. Reads the catalog only; runs in its own short transaction."""
    with conn.transaction():
        # An empty search path makes the catalog functions qualify every name in the schema.
        conn.execute("select set_config('search_path', '', true)")
        row = conn.execute(
            "select oid, quote_ident(nspname), nspacl::text from pg_namespace where nspname = %s",
            (schema,),
        ).fetchone()
        assert row is not None, f"schema {schema!r} does not exist"
        ns, quoted, schema_acl = row
        description = _describe(conn, ns)
        description["schema_acl"] = schema_acl
        description["ledger"] = read_ledger(conn, quoted)
    pattern = re.compile(r'(?<![\w$"])' + re.escape(quoted) + r"\.")
    result: dict[str, Any] = _replace_schema(description, pattern)
    return result


def read_ledger(conn: psycopg.Connection, quoted_schema: str) -> list[tuple[int, bool]]:
    """The ``(id, breaking)`` rows of the ledger in ``quoted_schema``, by id."""
    rows = conn.execute(f"select id, breaking from {quoted_schema}.migrations order by id")
    return [(row[0], row[1]) for row in rows]
