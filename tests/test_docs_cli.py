"""The `rtw` commands the README and docs/ show are the ones `rtw` has, and the README's command table shows
every option each command has.

A data manager copies these lines: a command or option renamed in etl/cli.py and not in the docs fails at
their terminal ("No such option"), and an option added to the CLI and not to the table is one nobody finds.
The CLI is read from its typer app (no process started); the docs from the Markdown as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import typer.main

from etl.cli import app

REPO_ROOT = Path(__file__).resolve().parents[1]
GENERATED = {"rules.md", "data-dictionary.md"}  # written from the code, checked by their own tests
DOCS = [REPO_ROOT / "README.md", *(p for p in sorted((REPO_ROOT / "docs").glob("*.md")) if p.name not in GENERATED)]
EVERY_COMMAND_TAKES = {"--help", "--home"}  # --home: the README says so once, above its table

# `rtw <command>` (or `rtw <group> <command>`) and what follows it in the same code span or line; a `|` ends
# it (a pipe, or the next cell of a table) unless escaped as Markdown tables escape it (`--new-only \| ...`).
_SHOWN = re.compile(r"(?<![\w/.-])rtw\s+([a-z][\w-]*)((?:\s+[a-z][\w-]*)?)((?:\\\||[^|;&#`])*)")
_OPTION = re.compile(r"(?<![\w-])--[a-z][\w-]*")


def _commands() -> dict[tuple[str, ...], set[str]]:
    """Every command of `rtw` (a group's as (group, command)) with its options, --no-x forms included."""
    found: dict[tuple[str, ...], set[str]] = {}

    def walk(command: object, path: tuple[str, ...]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            params = getattr(command, "params", [])
            found[path] = {o for p in params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}
            found[path] |= {"--help"}
            return
        for name, sub in subcommands.items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return found


def _code(text: str) -> Iterator[str]:
    """The inline code spans and the lines of the fenced blocks (a line continued with `\\` joined)."""
    blocks = re.findall(r"^```[\w-]*\n(.*?)^```", text, flags=re.S | re.M)
    for block in blocks:
        yield from block.replace("\\\n", " ").splitlines()
    prose = re.sub(r"^```[\w-]*\n.*?^```", "", text, flags=re.S | re.M)
    yield from re.findall(r"`([^`\n]+)`", prose)


def _shown(text: str, commands: dict[tuple[str, ...], set[str]]) -> Iterator[tuple[tuple[str, ...], str]]:
    """Each `rtw ...` a code span or line shows: the command it names, and the text of its arguments."""
    for code in _code(text):
        for match in _SHOWN.finditer(code):
            first, second, rest = match.group(1), match.group(2).strip(), match.group(3)
            if (first, second) in commands:
                yield (first, second), rest
            else:
                yield (first,), f"{second} {rest}"


def test_every_command_and_option_the_docs_show_is_one_rtw_has() -> None:
    commands = _commands()
    wrong = []
    for doc in DOCS:
        for command, arguments in _shown(doc.read_text(encoding="utf-8"), commands):
            name = " ".join(command)
            if command not in commands:
                wrong.append(f"{doc.name}: rtw {name}: no such command")
                continue
            wrong += [f"{doc.name}: rtw {name} has no {option} ({arguments.strip()[:60]!r})"
                      for option in _OPTION.findall(arguments) if option not in commands[command]]
    assert not wrong, "\n".join(wrong)


def test_the_readme_command_table_shows_every_command_with_every_option() -> None:
    # The README's table is where a data manager looks a command up: each row's first cell names its commands
    # (`rtw link A B ...` / `rtw unlink A B ...`), and the row mentions each of their options.
    commands = _commands()
    section = (REPO_ROOT / "README.md").read_text(encoding="utf-8").split("\n## Command line\n", 1)[1]
    rows = [line for line in section.split("\n## ", 1)[0].splitlines() if line.startswith("| `rtw ")]
    mentioned: dict[tuple[str, ...], set[str]] = {}
    for row in rows:
        first_cell = re.split(r"(?<!\\)\|", row)[1]
        for command, _ in _shown(first_cell, commands):
            mentioned.setdefault(command, set()).update(_OPTION.findall(row))
    missing = {" ".join(command): sorted(options - EVERY_COMMAND_TAKES - mentioned.get(command, set())
                                         - {o for o in options if o.startswith("--no-")})
               for command, options in commands.items()}
    missing = {name: options for name, options in missing.items() if options}
    unlisted = sorted(" ".join(command) for command in commands if command not in mentioned)
    assert not unlisted, f"README, Command line: no row for rtw {unlisted}"
    assert not missing, f"README, Command line: the rows do not show these options: {missing}"
