"""The documentation site builds with warnings as errors, and the README keeps its promises."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
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
