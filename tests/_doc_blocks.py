"""The code blocks of a documentation page, as the files of a project.

A block whose first line is a comment naming a path (``# myapp/tasks.py``) belongs to that
file; several blocks naming one path are joined in order. A block whose name is followed by
a variant in parentheses (``# conftest.py (one database for the whole run)``) is the other
version of the first block of that file: :func:`project_files` with that variant puts it in
the first block's place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
_HEADER = re.compile(r"#\s+(?P<path>[\w./-]+\.(?:py|toml))(?:\s+\((?P<variant>[^)]+)\))?\s*$")


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    path: str | None
    variant: str | None


def blocks(page: Path) -> list[Block]:
    """Every fenced code block of ``page``, in order."""
    found = []
    for match in _FENCE.finditer(page.read_text(encoding="utf-8")):
        text = match.group(2)
        header = _HEADER.fullmatch(text.partition("\n")[0])
        found.append(
            Block(
                language=match.group(1),
                text=text,
                path=header["path"] if header else None,
                variant=header["variant"] if header else None,
            )
        )
    return found


def project_files(page: Path, variant: str | None = None) -> dict[str, str]:
    """The files the blocks of ``page`` make up, by path, for ``variant`` (or the main
    version)."""
    parts: dict[str, list[str]] = {}
    for block in blocks(page):
        if block.path is None:
            continue
        if block.variant is None:
            parts.setdefault(block.path, []).append(block.text)
        elif block.variant == variant:
            parts[block.path][0] = block.text
    return {path: "\n\n".join(texts) for path, texts in parts.items()}


def variants(page: Path) -> set[str]:
    """The variants the blocks of ``page`` name."""
    return {block.variant for block in blocks(page) if block.variant is not None}
