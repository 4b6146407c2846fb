"""Finding task classes from ``--tasks MODULE[:ATTR]`` references."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

from ..errors import ConfigurationError
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
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    found: dict[AnyTaskType, None] = {}
    for reference in references:
        for task_type in _load_one(reference):
            found.setdefault(task_type, None)
    return list(found)


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
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigurationError(
                f"--tasks {reference!r}: module {module_name!r} has no attribute {attribute!r}"
            ) from None
    if callable(value) and not isinstance(value, type):
        value = value()
    tasks = _as_task_list(value, reference)
    if not tasks:
        raise ConfigurationError(f"--tasks {reference!r} gave no task classes")
    return tasks


def _import(module_name: str, reference: str) -> ModuleType:
    """Import the task module; an import that fails, in it or in a module it imports, is a
    :class:`ConfigurationError` naming the task module (the original error is its cause)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and (
            module_name == error.name or module_name.startswith(error.name + ".")
        ):
            raise ConfigurationError(
                f"--tasks {reference!r}: no module named {error.name!r} "
                f"(searched from {os.getcwd()})"
            ) from None
        raise _failed_import(module_name, reference, error) from error
    except ImportError as error:
        raise _failed_import(module_name, reference, error) from error


def _failed_import(module_name: str, reference: str, error: ImportError) -> ConfigurationError:
    return ConfigurationError(
        f"--tasks {reference!r}: loading the task module {module_name!r} failed: "
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
