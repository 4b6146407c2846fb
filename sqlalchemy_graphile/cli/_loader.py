"""Finding task classes from ``--tasks MODULE[:ATTR]`` references, and plugins from
``--plugin MODULE:ATTR`` ones."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

from ..errors import ConfigurationError
from ..hooks import WorkerPlugin
from ..tasks import AnyTaskType, BatchTask, Task, check_task_type


def load_tasks(references: Sequence[str]) -> list[AnyTaskType]:
    """The task classes named by ``references``, in order, without repeats.

    * ``MODULE`` collects every :class:`Task` / :class:`BatchTask` subclass with its own
      ``IDENTIFIER`` found in the module's namespace (defined there or imported into it);
    * ``MODULE:ATTR`` takes the attribute (dots allowed): a task class, an iterable of task
      classes, or a function called without arguments that returns one of those.

    The current directory is put on ``sys.path`` first, so ``myapp.tasks`` is found when the
    command runs from the project root. Raises :class:`ConfigurationError` for a module that
    cannot be imported (naming it, also when an import inside it fails), a missing
    attribute, or a reference that yields no task class, and :class:`InvalidTaskError` for
    something that is not a task class.
    """
    _search_current_directory()
    found: dict[AnyTaskType, None] = {}
    for reference in references:
        for task_type in _load_one(reference):
            found.setdefault(task_type, None)
    return list(found)


def _search_current_directory() -> None:
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())


def load_plugins(references: Sequence[str]) -> list[WorkerPlugin]:
    """The plugins named by ``--plugin MODULE:ATTR`` references, in order.

    The attribute (dots allowed) is a :class:`WorkerPlugin` instance, a subclass (called
    without arguments), or a function called without arguments that returns a plugin or a
    list of plugins. Raises :class:`ConfigurationError` for a module that cannot be
    imported, a missing attribute or anything that is not a plugin.
    """
    _search_current_directory()
    plugins: list[WorkerPlugin] = []
    for reference in references:
        module_name, _, attribute = reference.partition(":")
        if not module_name or not attribute:
            raise ConfigurationError(f"--plugin {reference!r} is not of the form MODULE:ATTR")
        module = _import(module_name, reference, "--plugin")
        value = _attribute(module, attribute, reference, "--plugin")
        if callable(value) and not isinstance(value, WorkerPlugin):
            value = value()
        found = [value] if isinstance(value, WorkerPlugin) else value
        if isinstance(found, str | bytes) or not isinstance(found, Iterable):
            found = [found]
        for plugin in found:
            if not isinstance(plugin, WorkerPlugin):
                raise ConfigurationError(
                    f"--plugin {reference!r} gave a {type(plugin).__name__!r} object; expected "
                    "a WorkerPlugin instance or subclass, or a function returning plugins"
                )
            plugins.append(plugin)
    return plugins


def _load_one(reference: str) -> list[AnyTaskType]:
    module_name, _, attribute = reference.partition(":")
    if not module_name or (":" in reference and not attribute):
        raise ConfigurationError(f"--tasks {reference!r} is not of the form MODULE[:ATTR]")
    module = _import(module_name, reference)
    if not attribute:
        tasks = [value for value in vars(module).values() if _is_concrete_task(value)]
        if not tasks:
            raise ConfigurationError(
                f"module {module_name!r} defines no Task or BatchTask with an IDENTIFIER"
            )
        return tasks
    value = _attribute(module, attribute, reference, "--tasks")
    if callable(value) and not isinstance(value, type):
        value = value()
    tasks = _as_task_list(value, reference)
    if not tasks:
        raise ConfigurationError(f"--tasks {reference!r} gave no task classes")
    return tasks


def _attribute(module: ModuleType, attribute: str, reference: str, flag: str) -> Any:
    """``module``'s ``attribute`` (a dotted path); :class:`ConfigurationError` naming
    ``flag`` and ``reference`` if any part of it is missing."""
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigurationError(
                f"{flag} {reference!r}: module {module.__name__!r} has no attribute {attribute!r}"
            ) from None
    return value


def _import(module_name: str, reference: str, flag: str = "--tasks") -> ModuleType:
    """Import the module of a ``flag`` reference; an import that fails, in it or in a module
    it imports, is a :class:`ConfigurationError` naming the module (the original error is
    its cause)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and (
            module_name == error.name or module_name.startswith(error.name + ".")
        ):
            raise ConfigurationError(
                f"{flag} {reference!r}: no module named {error.name!r} "
                f"(searched from {os.getcwd()})"
            ) from None
        raise _failed_import(module_name, reference, flag, error) from error
    except ImportError as error:
        raise _failed_import(module_name, reference, flag, error) from error


def _failed_import(
    module_name: str, reference: str, flag: str, error: ImportError
) -> ConfigurationError:
    what = "task module" if flag == "--tasks" else "module"
    return ConfigurationError(
        f"{flag} {reference!r}: loading the {what} {module_name!r} failed: "
        f"{type(error).__name__}: {error}"
    )


def _is_concrete_task(value: object) -> bool:
    return (
        isinstance(value, type)
        and issubclass(value, Task | BatchTask)
        and "IDENTIFIER" in vars(value)
    )


def _as_task_list(value: object, reference: str) -> list[AnyTaskType]:
    if isinstance(value, type):
        return [check_task_type(value)]
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigurationError(
            f"--tasks {reference!r} gave a {type(value).__name__!r} object; expected a task "
            "class, a list of task classes, or a function returning one"
        )
    return [check_task_type(item) for item in value]
