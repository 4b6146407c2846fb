"""Schema installation: the Alembic revisions and the helpers to use them.

* The revisions live in ``sqlalchemy_graphile/migrations/versions`` under the branch label
  ``graphile_worker``. Point Alembic at them with
  ``version_locations = ... sqlalchemy_graphile:migrations/versions``.
* :func:`include_object` keeps ``alembic revision --autogenerate`` in an application's own
  history away from our objects.
* :func:`install` / :func:`uninstall` do the work on a SQLAlchemy ``Connection`` inside the
  caller's transaction; Alembic, :meth:`WorkerUtils.migrate` and the CLI all call them.
"""

from __future__ import annotations

import os
from typing import Any

from .._identifiers import DEFAULT_SCHEMA, SCHEMA_ENV_VAR, validate_schema_name
from ._ddl import BREAKING_MIGRATIONS, SCHEMA_REVISION
from ._installer import LedgerState, check_compatible, install, read_ledger, uninstall

#: The Alembic branch label of our revisions (``alembic upgrade graphile_worker@head``).
BRANCH_LABEL = "graphile_worker"
#: ``version_locations`` entry that finds our revisions in the installed package.
VERSION_LOCATION = "sqlalchemy_graphile:migrations/versions"
#: The Alembic ``config.attributes`` key / ``-x`` argument that names the schema.
SCHEMA_OPTION = "graphile_worker_schema"
#: The revision id that installs Graphile Worker revision 19.
HEAD_REVISION = "gw0019"


def alembic_schema() -> str:
    """The schema name an Alembic run should use, validated.

    Looked up, in order: ``alembic -x schema=NAME``; ``config.attributes["graphile_worker_schema"]``
    (set it from your ``env.py``); the ``graphile_worker_schema`` option in ``alembic.ini``;
    ``$GRAPHILE_WORKER_SCHEMA``; ``graphile_worker``.
    """
    from alembic import context

    x_args: dict[str, str] = context.get_x_argument(as_dictionary=True)
    config = context.config
    candidates: list[Any] = [
        x_args.get("schema"),
        config.attributes.get(SCHEMA_OPTION),
        config.get_main_option(SCHEMA_OPTION),
        os.environ.get(SCHEMA_ENV_VAR),
    ]
    for candidate in candidates:
        if candidate:
            return validate_schema_name(candidate)
    return DEFAULT_SCHEMA


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """An Alembic ``include_object`` hook that hides the job queue schema from autogenerate.

    Pass it to ``context.configure(include_object=include_object)`` in your ``env.py``
    (call it from your own hook if you have one). Objects in the schema named by
    ``$GRAPHILE_WORKER_SCHEMA`` (default ``graphile_worker``), and the objects of our own
    metadata, are left out, so autogenerate never proposes to drop or alter them.
    """
    from ..models import metadata as our_metadata

    schemas = {DEFAULT_SCHEMA, os.environ.get(SCHEMA_ENV_VAR) or DEFAULT_SCHEMA}
    table = obj if type_ == "table" else getattr(obj, "table", None)
    obj_schema = getattr(table, "schema", None)
    if obj_schema in schemas:
        return False
    return not (table is not None and getattr(table, "metadata", None) is our_metadata)


__all__ = [
    "BRANCH_LABEL",
    "BREAKING_MIGRATIONS",
    "HEAD_REVISION",
    "SCHEMA_OPTION",
    "SCHEMA_REVISION",
    "VERSION_LOCATION",
    "LedgerState",
    "alembic_schema",
    "check_compatible",
    "include_object",
    "install",
    "read_ledger",
    "uninstall",
]
