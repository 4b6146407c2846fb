"""The module pytest loads through sqlalchemy-graphile's ``pytest11`` entry point.

pytest loads it in every run wherever the package is installed, so it does as little as it
can: it declares the ``graphile_worker_plugin`` configuration option and, only when that is
true, loads the real plugin, :mod:`sqlalchemy_graphile.pytest_plugin`. It imports neither
that plugin nor the package otherwise, so installing sqlalchemy-graphile changes nothing in
a test run that does not turn the plugin on. It lives outside the package because importing
any module of the package would import the package itself.

The plugin can also be turned on without this module (for example with plugin autoloading
disabled): ``-p sqlalchemy_graphile.pytest_plugin`` on the command line, or
``pytest_plugins = ["sqlalchemy_graphile.pytest_plugin"]`` in the root ``conftest.py``.
"""

from __future__ import annotations

import pytest

PLUGIN = "sqlalchemy_graphile.pytest_plugin"
OPTION = "graphile_worker_plugin"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        OPTION,
        type="bool",
        default=False,
        help=f"load {PLUGIN}: fixtures and helpers for testing code that adds jobs",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # Loaded here, as `-p` would load it: before the conftest files and before the
    # command line is parsed in full.
    if early_config.getini(OPTION):
        early_config.pluginmanager.import_plugin(PLUGIN)
