"""docs/cli.md documents every command the parser has: a section per command, with an
example, naming each of its options."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pants_oci.core.cli.parser import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs/cli.md"
# Options every command takes (documented once, under "Global options").
GLOBAL = {action.dest for action in build_parser()._actions}


def _commands(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*words, name))
            return
    yield " ".join(words), parser


def _sections() -> dict[str, str]:
    """Each `### \\`command ...\\`` section's text, by its heading's words before options."""
    text = DOC.read_text()
    found = {}
    for heading in re.finditer(r"^### `([^`]+)`(.*?)(?=^##|\Z)", text, re.M | re.S):
        words = []
        for word in heading.group(1).split():
            if not re.fullmatch(r"[a-z]+", word):
                break
            words.append(word)
        found[" ".join(words)] = heading.group(0)
    return found


COMMANDS = dict(_commands(build_parser()))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_a_section_with_an_example_naming_its_options(command: str) -> None:
    sections = _sections()
    assert command in sections, f"docs/cli.md has no `### \\`{command} ...\\`` section"
    section = sections[command]
    assert "```" in section, f"docs/cli.md's `{command}` section has no example"
    for action in COMMANDS[command]._actions:
        if action.dest in GLOBAL or action.dest == "help" or not action.option_strings:
            continue
        named = [o for o in action.option_strings if re.search(rf"(?<![\w-]){o}(?![\w-])", section)]
        assert named, f"docs/cli.md's `{command}` section does not name {action.option_strings}"
