"""Every command of `runbookd`, and every one of their options and arguments, says what it is
for: the CLI is what an on-call engineer reaches for when the web page is not enough."""

from __future__ import annotations

from typing import Any

import typer.main

from app.cli import app


def _walk(command: Any, path: str = "runbookd"):
    yield path, command
    if getattr(command, "commands", None):  # a group (typer vendors its own click)
        for name, sub in command.commands.items():
            yield from _walk(sub, f"{path} {name}")


def test_every_command_option_and_argument_has_help_text():
    missing = []
    for path, command in _walk(typer.main.get_command(app)):
        if not (command.help or command.short_help):
            missing.append(path)
        for param in command.params:
            if param.name == "help":
                continue
            text = getattr(param, "help", None)
            if not text:
                missing.append(f"{path} {param.name}")
    assert missing == []


def test_the_commands_people_rely_on_exist():
    names = {path for path, _ in _walk(typer.main.get_command(app))}
    assert {"runbookd serve", "runbookd worker", "runbookd lint", "runbookd simulate",
            "runbookd approve", "runbookd reject", "runbookd show", "runbookd history",
            "runbookd postmortem", "runbookd pause", "runbookd resume",
            "runbookd kill-switch", "runbookd cancel", "runbookd db upgrade",
            "runbookd token create", "runbookd demo-registry", "runbookd prune"} <= names
