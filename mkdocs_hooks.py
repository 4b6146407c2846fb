"""MkDocs hooks for the documentation site (``mkdocs build --strict``, ``nox -s docs``).

The navigation in ``mkdocs.yml`` names every page the site is meant to have. Entries whose
page does not exist in ``docs/`` yet are left out of the built site instead of failing the
build. A page that exists but is missing from the navigation still fails a strict build
(``validation.nav.omitted_files: warn``), so a misspelt entry is caught.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig

logger = logging.getLogger("mkdocs.hooks.sqlalchemy_graphile")


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Drop navigation entries that point at pages not written yet."""
    if config.nav is not None:
        config.nav = _existing(config.nav, Path(config.docs_dir))
    return config


def _existing(items: list[Any], docs_dir: Path) -> list[Any]:
    kept: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            title, target = next(iter(item.items()))
            if isinstance(target, list):
                children = _existing(target, docs_dir)
                if children:
                    kept.append({title: children})
                continue
            if not _is_page(target) or (docs_dir / target).is_file():
                kept.append(item)
            else:
                logger.info("navigation: %s is not written yet; left out", target)
        elif not _is_page(item) or (docs_dir / item).is_file():
            kept.append(item)
    return kept


def _is_page(target: object) -> bool:
    return isinstance(target, str) and target.endswith(".md") and "://" not in target
