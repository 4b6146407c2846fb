"""Schema installation: the Alembic revisions and the helpers to use them.

* The revisions live in ``sqlalchemy_graphile/migrations/versions`` under the branch label
  ``graphile_worker``. Point Alembic at them with
  ``version_locations = ... sqlalchemy_graphile:migrations/versions``.
* :func:`include_object` keeps ``alembic revision --autogenerate`` in an application's own
  history away from our objects.
* :func:`install` / :func:`uninstall` (and :func:`install_recovery` /
  :func:`uninstall_recovery` for revision 20 alone) do the work on a SQLAlchemy
  ``Connection`` inside the caller's transaction; Alembic, :meth:`WorkerUtils.migrate` and
  the CLI all call them.

Importing this package does not import SQLAlchemy: :func:`install`, :func:`read_ledger` and
:func:`uninstall` are loaded on first use, so a worker can use :class:`LedgerState` and
:func:`check_compatible` without paying for SQLAlchemy's import.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import TYPE_CHECKING, Any

from .._identifiers import DEFAULT_SCHEMA, resolve_schema, validate_schema_name
from ._ddl import BREAKING_MIGRATIONS, SCHEMA_REVISION
from ._ledger import LedgerState, check_compatible
from ._recovery_ddl import RECOVERY_REVISION

if TYPE_CHECKING:
    from ._installer import install, install_recovery, read_ledger, uninstall, uninstall_recovery

# The functions that work on a SQLAlchemy Connection, imported on first use.
_ON_SQLALCHEMY = frozenset(
    {"install", "install_recovery", "read_ledger", "uninstall", "uninstall_recovery"}
)

#: The Alembic branch label of our revisions (``alembic upgrade graphile_worker@head``).
BRANCH_LABEL = "graphile_worker"
#: ``version_locations`` entry that finds our revisions in the installed package.
VERSION_LOCATION = "sqlalchemy_graphile:migrations/versions"
#: The Alembic ``config.attributes`` key and ``alembic.ini`` option that name the schema
#: (on the command line: ``alembic -x schema=NAME``).
SCHEMA_OPTION = "graphile_worker_schema"
#: The revision id that installs Graphile Worker revision 19.
BASE_REVISION = "gw0019"
#: The revision id that adds the worker-recovery objects (ledger id 20): our head.
HEAD_REVISION = "gw0020"


def alembic_schema() -> str:
    """The schema name an Alembic run should use, validated.

    Looked up, in order: ``alembic -x schema=NAME``; ``config.attributes["graphile_worker_schema"]``
    (set it from your ``env.py``); the ``graphile_worker_schema`` option in ``alembic.ini``;
    ``$GRAPHILE_WORKER_SCHEMA``; ``graphile_worker``. A name given in any of the first three
    places is used even if empty, so ``-x schema=`` is refused rather than ignored. Raises
    :class:`~sqlalchemy_graphile.errors.InvalidIdentifierError` for an unsafe name, before
    any connection is made. Call it only while Alembic runs (from ``env.py`` or a revision).
    """
    from alembic import context

    x_args: dict[str, str] = context.get_x_argument(as_dictionary=True)
    if "schema" in x_args:
        return validate_schema_name(x_args["schema"])
    config = context.config
    for configured in (config.attributes.get(SCHEMA_OPTION), config.get_main_option(SCHEMA_OPTION)):
        if configured is not None:
            return validate_schema_name(configured)
    return resolve_schema()


def _our_schemas() -> set[str]:
    """The schema names :func:`include_object` hides: the default, ``$GRAPHILE_WORKER_SCHEMA``
    and, while Alembic runs, the one :func:`alembic_schema` picks."""
    schemas = {DEFAULT_SCHEMA, resolve_schema()}
    # Outside an Alembic run, Alembic's context proxy raises NameError: nothing more to add.
    with contextlib.suppress(NameError):
        schemas.add(alembic_schema())
    return schemas


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """An Alembic ``include_object`` hook that hides the job queue schema from autogenerate.

    Pass it to ``context.configure(include_object=include_object)`` in your ``env.py``
    (call it from your own hook if you have one). Objects in our schema (``graphile_worker``,
    ``$GRAPHILE_WORKER_SCHEMA``, or the name given to Alembic as ``-x schema=NAME`` or the
    ``graphile_worker_schema`` option), and the objects of our own metadata, are left out, so
    autogenerate never proposes to create, drop or alter them.
    """
    from ..models import metadata as our_metadata

    table = obj if type_ == "table" else getattr(obj, "table", None)
    obj_schema = getattr(table, "schema", None)
    if obj_schema is not None and obj_schema in _our_schemas():
        return False
    return not (table is not None and getattr(table, "metadata", None) is our_metadata)


def __getattr__(name: str) -> Any:
    if name not in _ON_SQLALCHEMY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("._installer", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "BASE_REVISION",
    "BRANCH_LABEL",
    "BREAKING_MIGRATIONS",
    "HEAD_REVISION",
    "RECOVERY_REVISION",
    "SCHEMA_OPTION",
    "SCHEMA_REVISION",
    "VERSION_LOCATION",
    "LedgerState",
    "alembic_schema",
    "check_compatible",
    "include_object",
    "install",
    "install_recovery",
    "read_ledger",
    "uninstall",
    "uninstall_recovery",
]
