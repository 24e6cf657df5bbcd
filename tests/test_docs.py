"""README.md documents every command and every config key, in the style of sqlite-utils' docs tests."""

from __future__ import annotations

import dataclasses
import re
import typing

import click
import pytest
from click.testing import CliRunner

from conftest import REPO_ROOT
from pixelperfect_daemon.cli import LAZY_COMMANDS, main
from pixelperfect_daemon.config import Settings

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def _command_paths(group: click.Group, ctx: click.Context, prefix: tuple[str, ...] = ()):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _command_paths(command, ctx, (*prefix, name))


def _all_commands():
    with click.Context(main) as ctx:
        return list(_command_paths(main, ctx))


def _config_keys():
    hints = typing.get_type_hints(Settings)
    for section in dataclasses.fields(Settings):
        if section.name == "source":
            continue
        for key in dataclasses.fields(hints[section.name]):
            yield section.name, key.name


def _readme_config_block() -> str:
    match = re.search(r"## Configuration\n.*?```toml\n(.*?)```", README, re.S)
    assert match, "README.md has no ## Configuration section with a toml block"
    return match.group(1)


def test_every_top_level_command_is_lazy_and_listed():
    assert sorted(LAZY_COMMANDS) == sorted(path[0] for path, _ in _all_commands() if len(path) == 1)


@pytest.mark.parametrize("path", [" ".join(path) for path, _ in _all_commands()])
def test_every_command_is_in_the_readme_and_has_help_with_an_example(path):
    assert f"pixelperfect {path}" in README, f"README.md does not mention `pixelperfect {path}`"
    result = CliRunner().invoke(main, [*path.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"`pixelperfect {path} --help` shows no example"


@pytest.mark.parametrize("section,key", list(_config_keys()))
def test_every_config_key_is_in_the_readme_config_block(section, key):
    block = _readme_config_block()
    sections = re.split(r"^\[([a-z_.]+)\]\s*$", block, flags=re.M)
    bodies = {sections[i]: sections[i + 1] for i in range(1, len(sections) - 1, 2)}
    body = bodies.get(section, "")
    # A nested table ([ui.users]) or an inline commented key counts as documenting the key.
    documented = re.search(rf"^#?\s*{key}\s*=", body, re.M) or f"[{section}.{key}]" in block
    assert documented, f"[{section}] {key} is not in README.md's configuration block"
