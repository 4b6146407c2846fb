"""``doctor``: check the deployment and explain each problem with its fix."""

from __future__ import annotations

import argparse
import sys
import textwrap

from ..doctor import Diagnosis, Finding, diagnose
from ._common import database_url, emit, schema_name

#: Exit statuses of ``doctor`` (besides 1 when it cannot run at all and 2 for usage).
EXIT_HEALTHY = 0
EXIT_WARNINGS = 3
EXIT_ERRORS = 4

_MARKS = {"ok": "ok", "warning": "WARNING", "error": "ERROR", "skipped": "skipped"}


async def doctor(args: argparse.Namespace) -> int:
    """Run every check; print the findings (``--json``: one object) and return 0 when all
    is well, 3 when something deserves a look, 4 when something is broken."""
    diagnosis = await diagnose(
        database_url(args),
        schema=schema_name(args),
        workers=args.workers,
        max_pool_size=args.max_pool_size,
        app_connections=args.app_connections,
    )
    data = {
        "status": diagnosis.status,
        "checks": [
            {
                "check": f.check,
                "status": f.status,
                "summary": f.summary,
                "fix": f.fix,
                "details": dict(f.details),
            }
            for f in diagnosis.findings
        ],
    }
    emit(args, data, lambda: _text(diagnosis))
    sys.stdout.flush()
    return {"healthy": EXIT_HEALTHY, "warnings": EXIT_WARNINGS, "errors": EXIT_ERRORS}[
        diagnosis.status
    ]


def _text(diagnosis: Diagnosis) -> str:
    lines = [_line(finding) for finding in diagnosis.findings]
    lines.append(f"\n{diagnosis.status}")
    return "\n".join(lines)


def _line(finding: Finding) -> str:
    head = f"{_MARKS[finding.status]:<8} {finding.check:<13} "
    text = textwrap.fill(
        finding.summary, width=100, initial_indent=head, subsequent_indent=" " * len(head)
    )
    if finding.fix:
        text += "\n" + textwrap.fill(
            f"fix: {finding.fix}",
            width=100,
            initial_indent=" " * len(head),
            subsequent_indent=" " * (len(head) + 5),
        )
    return text
