"""Schema commands: ``migrate`` (install or adopt) and ``check`` (report compatibility)."""

from __future__ import annotations

import argparse

from ..migrations import (
    RECOVERY_REVISION,
    SCHEMA_REVISION,
    LedgerState,
    check_compatible,
    read_ledger,
)
from ..utils import WorkerUtils
from ._common import CLI_APPLICATION_NAME, database_url, emit, open_engine, schema_name


async def migrate(args: argparse.Namespace) -> int:
    """``migrate``: install the schema, or adopt one Graphile Worker installed; prints
    ``Schema updated``."""
    schema = schema_name(args)
    async with open_engine(database_url(args), CLI_APPLICATION_NAME) as engine:
        installed = await WorkerUtils(engine, schema=schema).migrate()
    emit(
        args,
        {"schema": schema, "installed": installed, "revision": RECOVERY_REVISION},
        lambda: "Schema updated",
    )
    return 0


async def check(args: argparse.Namespace) -> int:
    """``check``: exit 0 when a worker of this version can run on the schema; else the
    error's exit status (1, or 57 for a newer breaking migration)."""
    schema = schema_name(args)
    async with (
        open_engine(database_url(args), CLI_APPLICATION_NAME) as engine,
        engine.connect() as connection,
    ):
        state: LedgerState = await connection.run_sync(read_ledger, schema)
    check_compatible(state, schema)
    emit(
        args,
        {
            "schema": schema,
            "revision": state.latest,
            "latest_breaking": state.latest_breaking,
            "supported": SCHEMA_REVISION,
            "compatible": True,
        },
        lambda: (
            f"Schema {schema!r} is at revision {state.latest}: compatible "
            f"(this version supports revisions {SCHEMA_REVISION} and {RECOVERY_REVISION})"
        ),
    )
    return 0
