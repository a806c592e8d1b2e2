"""``aiovirsh --help`` and each command's ``--help`` as an operator reads them."""

from __future__ import annotations

import contextlib
import io

import pytest

from aiovirt.cli import build_parser
from aiovirt.cli.commands import ALIASES, COMMANDS, GROUPS, CommandSpec


def _help(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*argv, "--help"])
    assert exit_.value.code == 0
    return out.getvalue()


def test_top_level_help_groups_the_commands_as_virsh_does() -> None:
    text = _help()
    positions = [text.index(f"\n{group}:\n") for group in GROUPS]
    assert positions == sorted(positions)
    for spec in COMMANDS:
        assert spec.group in GROUPS, f"{spec.name} is in no group of the help"
        section = text[text.index(f"\n{spec.group}:\n"):]
        section = section[:section.find("\n\n", 1)]
        assert f"  {spec.name}" in section, f"{spec.name} not listed under {spec.group}"
    for name, aliases in ALIASES.items():
        assert f"{name}, {', '.join(aliases)}" in text
    assert "Domain management:\n  create" in text


@pytest.mark.parametrize("spec", COMMANDS, ids=lambda s: s.name)
def test_every_command_help_has_an_example_that_parses(spec: CommandSpec) -> None:
    name = spec.name
    text = _help(name)
    example = next(line for line in text.splitlines() if line.startswith("example: "))
    words = example.removeprefix("example: ").split(">")[0].split()
    assert words[0] == "aiovirsh" and name in words
    args = build_parser().parse_args(words[1:])
    assert args.spec.name == name
