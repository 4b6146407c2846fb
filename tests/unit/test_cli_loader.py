"""Finding task classes from ``--tasks MODULE[:ATTR]``."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from sqlalchemy_graphile.cli._loader import load_plugins, load_tasks
from sqlalchemy_graphile.errors import ConfigurationError, InvalidTaskError

_TASKS = '''
from typing import ClassVar
from sqlalchemy_graphile import BatchTask, Task


class Base(Task):
    """No IDENTIFIER: an abstract base, never registered."""


class Email(Base):
    IDENTIFIER: ClassVar[str] = "email"

    async def run(self, ctx): ...


class Notify(BatchTask):
    IDENTIFIER: ClassVar[str] = "notify"

    @classmethod
    async def run_batch(cls, items, ctx): ...


def jobs():
    return [Email]


ALL = (Email, Notify)
NOT_TASKS = [Email, int]
NUMBER = 3


class Registry:
    tasks = [Notify]
'''


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], str]:
    """Write a module into a fresh directory on ``sys.path``; forgotten after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        monkeypatch.delitem(sys.modules, name, raising=False)
        return name

    return make


def _identifiers(references: list[str]) -> list[str]:
    return [task.task_identifier() for task in load_tasks(references)]


def test_bare_module_collects_concrete_tasks(make_module: Callable[[str, str], str]) -> None:
    module = make_module("loader_tasks_a", _TASKS)
    assert _identifiers([module]) == ["email", "notify"]


def test_imported_tasks_count_and_repeats_are_dropped(
    make_module: Callable[[str, str], str],
) -> None:
    first = make_module("loader_tasks_b", _TASKS)
    second = make_module("loader_reexport_b", f"from {first} import Email, Base\n")
    assert _identifiers([second]) == ["email"]
    assert _identifiers([first, second, f"{first}:ALL"]) == ["email", "notify"]


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("ALL", ["email", "notify"]),
        ("jobs", ["email"]),
        ("Notify", ["notify"]),
        ("Registry.tasks", ["notify"]),
    ],
)
def test_module_attribute(
    make_module: Callable[[str, str], str], attribute: str, expected: list[str]
) -> None:
    module = make_module("loader_tasks_c", _TASKS)
    assert _identifiers([f"{module}:{attribute}"]) == expected


def test_bad_references(make_module: Callable[[str, str], str]) -> None:
    module = make_module("loader_tasks_d", _TASKS)
    empty = make_module("loader_empty_d", "X = 1\n")
    with pytest.raises(ConfigurationError, match="no module named 'loader_missing_d'"):
        load_tasks(["loader_missing_d"])
    with pytest.raises(ConfigurationError, match="has no attribute 'nope'"):
        load_tasks([f"{module}:nope"])
    with pytest.raises(ConfigurationError, match="not of the form MODULE"):
        load_tasks([f"{module}:"])
    with pytest.raises(ConfigurationError, match="defines no Task or BatchTask"):
        load_tasks([empty])
    with pytest.raises(ConfigurationError, match="gave a 'int' object; expected a task class"):
        load_tasks([f"{module}:NUMBER"])
    with pytest.raises(InvalidTaskError, match="is not a Task or BatchTask subclass"):
        load_tasks([f"{module}:NOT_TASKS"])
    with pytest.raises(InvalidTaskError, match="has no IDENTIFIER"):
        load_tasks([f"{module}:Base"])


def test_a_failed_import_inside_the_module_names_the_task_module(
    make_module: Callable[[str, str], str],
) -> None:
    module = make_module("loader_broken_e", "import loader_dependency_that_is_missing\n")
    with pytest.raises(ConfigurationError) as raised:
        load_tasks([f"{module}:jobs"])
    assert str(raised.value) == (
        "--tasks 'loader_broken_e:jobs': loading the task module 'loader_broken_e' failed: "
        "ModuleNotFoundError: No module named 'loader_dependency_that_is_missing'"
    )
    assert isinstance(raised.value.__cause__, ModuleNotFoundError)
    other = make_module("loader_broken_f", "from loader_tasks_a import NoSuchName\n")
    make_module("loader_tasks_a", _TASKS)
    with pytest.raises(ConfigurationError, match="the task module 'loader_broken_f' failed: Imp"):
        load_tasks([other])


_PLUGINS = """
from sqlalchemy_graphile import WorkerPlugin


class Audit(WorkerPlugin):
    pass


AUDIT = Audit()


def both():
    return [Audit(), AUDIT]


NOT_A_PLUGIN = 3
"""


def test_plugins_are_instances_classes_or_functions(
    make_module: Callable[[str, str], str],
) -> None:
    module = make_module("loader_plugins_a", _PLUGINS)
    plugins = load_plugins([f"{module}:AUDIT", f"{module}:Audit", f"{module}:both"])
    assert [type(plugin).__name__ for plugin in plugins] == ["Audit"] * 4
    assert plugins[0] is plugins[3]
    assert plugins[1] is not plugins[0]


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("loader_plugins_b", "is not of the form MODULE:ATTR"),
        ("loader_plugins_b:MISSING", "has no attribute 'MISSING'"),
        ("loader_plugins_b:NOT_A_PLUGIN", "expected a WorkerPlugin"),
        ("no_such_plugin_module:X", "--plugin 'no_such_plugin_module:X': no module named"),
    ],
)
def test_bad_plugin_references_are_configuration_errors(
    make_module: Callable[[str, str], str], reference: str, message: str
) -> None:
    make_module("loader_plugins_b", _PLUGINS)
    with pytest.raises(ConfigurationError, match=message):
        load_plugins([reference])
