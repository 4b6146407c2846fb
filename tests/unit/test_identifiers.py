"""The schema-name validator and quoter: the only identifiers that ever reach SQL text."""

from __future__ import annotations

import re

import pytest

from sqlalchemy_graphile import InvalidIdentifierError, quote_identifier, validate_schema_name
from sqlalchemy_graphile._identifiers import DEFAULT_SCHEMA, SCHEMA_ENV_VAR, resolve_schema

ACCEPTED = [
    "graphile_worker",
    "my_jobs",
    "a",
    "_",
    "_jobs",
    "x1",
    "a$",
    "a$b",
    "Jobs$Q",
    "MixedCase",
    "UPPER",
    "select",  # a keyword: fine, because the name is always quoted
    "user",
    "pgx",  # only the "pg_" prefix is reserved
    "a" * 63,
]

# (name, a fragment of the error message)
REJECTED: list[tuple[object, str]] = [
    ("", "must not be empty"),
    ('a"b', "not a safe identifier"),
    ('"', "not a safe identifier"),
    ('graphile_worker"; drop table users; --', "not a safe identifier"),
    ("a'b", "not a safe identifier"),
    ("a;b", "not a safe identifier"),
    (";", "not a safe identifier"),
    ("a b", "not a safe identifier"),
    (" a", "not a safe identifier"),
    ("a ", "not a safe identifier"),
    ("a\tb", "not a safe identifier"),
    ("a\nb", "not a safe identifier"),
    ("a\n", "not a safe identifier"),
    ("$$", "not a safe identifier"),
    ("$a", "not a safe identifier"),
    ("a$$b", "more than one '$'"),
    ("x$add_job$", "more than one '$'"),
    ("a$b$c", "more than one '$'"),
    ("%s", "not a safe identifier"),
    ("a%sb", "not a safe identifier"),
    ("%(s)s", "not a safe identifier"),
    ("{s}", "not a safe identifier"),
    ("a{s}b", "not a safe identifier"),
    ("a:b", "not a safe identifier"),
    ("a.b", "not a safe identifier"),
    ("a-b", "not a safe identifier"),
    ("a\\b", "not a safe identifier"),
    ("a\x00b", "not a safe identifier"),
    ("\x00", "not a safe identifier"),
    ("a\u200fb", "not a safe identifier"),  # right-to-left mark
    ("\u202ejobs", "not a safe identifier"),  # right-to-left override
    ("a\u0301", "not a safe identifier"),  # combining acute accent
    ("é", "not a safe identifier"),
    ("\uff41", "not a safe identifier"),  # fullwidth "a"
    ("jobs\u200b", "not a safe identifier"),  # zero-width space
    ("a" * 64, "longer than 63 characters"),
    ("a" * 1000, "longer than 63 characters"),
    ("1abc", "not a safe identifier"),
    ("9", "not a safe identifier"),
    ("pg_jobs", "reserved"),
    ("pg_", "reserved"),
    ("PG_jobs", "reserved"),
    (None, "must be a str"),
    (42, "must be a str"),
    (b"graphile_worker", "must be a str"),
    (["graphile_worker"], "must be a str"),
]


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepts_safe_names_unchanged(name: str) -> None:
    assert validate_schema_name(name) == name


@pytest.mark.parametrize(("name", "message"), REJECTED)
def test_rejects_unsafe_names_with_a_typed_error(name: object, message: str) -> None:
    with pytest.raises(InvalidIdentifierError, match=re.escape(message)):
        validate_schema_name(name)


def test_invalid_identifier_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a safe identifier"):
        validate_schema_name("a b")


def test_error_message_shows_the_name() -> None:
    with pytest.raises(InvalidIdentifierError) as caught:
        validate_schema_name("bad name")
    assert "'bad name'" in str(caught.value)


@pytest.mark.parametrize("name", ACCEPTED)
def test_quote_identifier_always_double_quotes(name: str) -> None:
    assert quote_identifier(name) == f'"{name}"'


@pytest.mark.parametrize(("name", "message"), REJECTED)
def test_quote_identifier_validates_first(name: object, message: str) -> None:
    with pytest.raises(InvalidIdentifierError, match=re.escape(message)):
        quote_identifier(name)  # type: ignore[arg-type]


def test_resolve_schema_defaults_to_graphile_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCHEMA_ENV_VAR, raising=False)
    assert resolve_schema() == DEFAULT_SCHEMA == "graphile_worker"


def test_resolve_schema_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SCHEMA_ENV_VAR, "Jobs$Q")
    assert resolve_schema() == "Jobs$Q"


def test_resolve_schema_ignores_an_empty_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SCHEMA_ENV_VAR, "")
    assert resolve_schema() == DEFAULT_SCHEMA


def test_resolve_schema_prefers_the_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SCHEMA_ENV_VAR, "from_env")
    assert resolve_schema("from_argument") == "from_argument"


@pytest.mark.parametrize("name", ['x"; drop schema public; --', "a b", "pg_x", "a" * 64])
def test_resolve_schema_rejects_an_unsafe_environment_variable(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(SCHEMA_ENV_VAR, name)
    with pytest.raises(InvalidIdentifierError):
        resolve_schema()


def test_resolve_schema_rejects_an_unsafe_argument() -> None:
    with pytest.raises(InvalidIdentifierError):
        resolve_schema("a;b")
