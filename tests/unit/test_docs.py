"""The documentation site builds with warnings as errors, and the README keeps its promises."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sqlalchemy_graphile.cli._parser import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_mkdocs_build_is_strict_clean(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs comes with the dev extra")
    config, site = str(ROOT / "mkdocs.yml"), str(tmp_path / "site")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet"]
    result = subprocess.run(
        [*command, "--config-file", config, "--site-dir", site],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "cli" / "index.html").is_file()
    assert (tmp_path / "site" / "running-workers" / "index.html").is_file()


def test_every_page_is_in_the_navigation() -> None:
    navigation = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\s+- [^:]+: ([\w./-]+\.md)$", navigation, flags=re.MULTILINE))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages <= listed, f"add these pages to the nav in mkdocs.yml: {sorted(pages - listed)}"


def test_readme_first_screen_has_exactly_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"```sh\n(.*?)```", readme, flags=re.DOTALL)
    assert first_block is not None
    title, _, intro = readme[: first_block.start()].partition("\n")
    assert title.startswith("# ")
    assert "\n\n" not in intro.strip(), "the README opens with one paragraph, then the commands"
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, flags=re.MULTILINE)
    assert re.search(r"^test:", makefile, flags=re.MULTILINE)


def test_cli_page_covers_every_command_and_option() -> None:
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, command in commands.items():
        assert f"`{name}" in page, f"docs/cli.md does not describe the {name} command"
        for action in command._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert option in page, f"docs/cli.md does not mention {name} {option}"


@pytest.mark.parametrize(("index", "prefix"), [("README.md", "docs/"), ("docs/index.md", "")])
def test_the_readme_and_the_overview_link_every_guide(index: str, prefix: str) -> None:
    text = (ROOT / index).read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([\w./-]+\.md)(?:#[\w-]*)?\)", text))
    guides = {
        prefix + page.name for page in (ROOT / "docs").glob("*.md") if page.name != "index.md"
    }
    assert guides <= linked, f"{index} does not link {sorted(guides - linked)}"


#: Programs a checkout's .venv provides (the dev extra), which a fresh shell does not have on
#: its PATH: the docs must spell them `.venv/bin/NAME` or use a `make` target. (Commands a
#: user runs in their own environment, `sqlalchemy-graphile` and `alembic`, come with the
#: package.)
_VENV_PROGRAMS = frozenset({"nox", "pytest", "mkdocs", "ruff", "mypy"})
_VENV_MODULES = frozenset({"benchmarks", "pytest", "nox", "mkdocs", "mypy", "ruff"})
_FENCE = re.compile(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", flags=re.MULTILINE | re.DOTALL)
_SHELL_FENCES = frozenset({"sh", "console", "bash", "shell", ""})


def _shown_commands(text: str) -> list[str]:
    """The command lines of the shell blocks, and the inline code spans of the prose."""
    commands = []
    for language, body in _FENCE.findall(text):
        if language in _SHELL_FENCES:
            for line in body.splitlines():
                commands.append(line.strip().removeprefix("$ ").split(" #")[0].strip())
    prose = _FENCE.sub("", text)
    commands += re.findall(r"`([^`\n]+)`", prose)
    return [c for c in commands if c]


def _program(command: str) -> list[str]:
    """The words of ``command`` without leading ``NAME=value`` assignments."""
    words = command.split()
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words.pop(0)
    return words


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))]
)
def test_commands_the_docs_show_run_from_a_fresh_shell(page: str) -> None:
    """After the README's set-up (``make demo`` / ``make test`` made ``.venv``), a command the
    docs show for working on a checkout either names the venv's program or is a ``make``
    target; a fresh shell has neither nox nor the project's pytest on its PATH."""
    path = ROOT / page if page == "README.md" else ROOT / "docs" / page
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.MULTILINE))
    venv_bin = Path(sys.executable).parent
    for command in _shown_commands(path.read_text(encoding="utf-8")):
        words = _program(command)
        if len(words) < 2:
            continue  # a name in prose (`pytest`), not a command line
        program = words[0]
        assert program not in _VENV_PROGRAMS, (
            f"{page}: `{command}`: write .venv/bin/{program}, or use a make target"
        )
        if program in ("python", "python3") and words[1] == "-m":
            assert words[2].split(".")[0] not in _VENV_MODULES, (
                f"{page}: `{command}`: write .venv/bin/python -m {words[2]}"
            )
        if program.startswith(".venv/bin/"):
            assert (venv_bin / program.removeprefix(".venv/bin/")).is_file(), command
        if program == "make":
            assert words[1] in targets, f"{page}: `{command}`: no such make target"


def _extras_table(text: str) -> list[str]:
    start = text.index("| Extra | Installs | What it is for |")
    rows = []
    for line in text[start:].splitlines():
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_the_extras_table_is_the_package_s() -> None:
    """README and overview show one table, naming every user-facing extra of pyproject.toml
    and nothing else."""
    readme = _extras_table((ROOT / "README.md").read_text(encoding="utf-8"))
    overview = _extras_table((ROOT / "docs" / "index.md").read_text(encoding="utf-8"))
    assert readme == overview
    named = set(re.findall(r"^\| `(\w+)` \|", "\n".join(readme[3:]), flags=re.MULTILINE))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = set(project["project"]["optional-dependencies"]) - {"test", "dev"}
    assert named == extras


def test_the_alembic_ini_lines_the_docs_show_are_the_tested_example_s() -> None:
    page = (ROOT / "docs" / "migrations.md").read_text(encoding="utf-8")
    (block,) = [body for language, body in _FENCE.findall(page) if language == "ini"]
    example = (ROOT / "examples" / "alembic_app" / "alembic.ini").read_text(encoding="utf-8")
    for line in block.splitlines():
        assert line.strip() in example.splitlines(), line
    assert "sqlalchemy_graphile:migrations/versions" in block
