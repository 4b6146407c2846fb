"""Schema names that every entry point must refuse before any SQL runs."""

from __future__ import annotations

HOSTILE_SCHEMA_NAMES = [
    'graphile_worker"; drop schema public cascade; --',
    'a"b',
    "a'b",
    "jobs;",
    "a b",
    "$$",
    "a$$b",
    "x$add_job$",
    "%s",
    "%(schema)s",
    "{s}",
    "a\x00b",
    "jobs\u200f",  # right-to-left mark
    "j\u0301obs",  # combining accent
    "a" * 64,
    "",
    "pg_jobs",
    "1jobs",
]
