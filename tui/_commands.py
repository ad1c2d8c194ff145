"""The slash commands: their table, parsing an input line, and tab completion. Pure.

A line that starts with "/" is a command ("//" sends a line starting with "/"); a line
that is an invite (``rumor://…``) joins it; anything else is a message. Commands that act
on a message name it with an optional ``^N`` first argument (the N-th newest message,
``^1`` the newest); without it they act on the selected message (Alt+Up / Alt+Down or a
click), else on the newest one (your own newest for /edit and /delete).
This module must never touch Textual or the node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "COMMANDS",
    "KEYS",
    "Command",
    "CommandError",
    "Invite",
    "Say",
    "complete",
    "help_lines",
    "parse",
    "split_target",
]

INVITE_SCHEME: Final = "rumor://"


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    args: str
    help: str
    needs_arg: bool = False


COMMANDS: Final[dict[str, Spec]] = {
    spec.name: spec
    for spec in (
        Spec("create", "NAME", "create a room and switch to it", True),
        Spec("join", "INVITE", "join a room from an invite (pasting the invite works too)", True),
        Spec("invite", "", "show this room's invite and copy it to the clipboard"),
        Spec("nick", "NAME", "set your nick in every room", True),
        Spec("topic", "TEXT", "set this room's topic", True),
        Spec("me", "TEXT", "send an action (“* alice waves”)", True),
        Spec("reply", "[^N] TEXT", "answer a message, quoting it", True),
        Spec("edit", "[^N] TEXT", "replace the text of one of your messages", True),
        Spec("delete", "[^N]", "delete one of your messages"),
        Spec("react", "[^N] EMOJI", "add a reaction (again: take it back)", True),
        Spec("search", "[TEXT]", "jump to the newest message containing TEXT; again: older"),
        Spec("mentions", "", "every message that names you, across rooms"),
        Spec("leave", "", "leave this room"),
        Spec("peers", "", "diagnostics: why messages may not be arriving (F4)"),
        Spec("members", "", "show or hide the member list (F2)"),
        Spec("notify", "[bell|desktop|both|off]", "how a mention gets your attention"),
        Spec("help", "", "this list (F1)"),
        Spec("quit", "", "leave the program (Ctrl+Q)"),
    )
}

KEYS: Final = (
    ("Enter", "send"),
    ("Shift+Enter, Ctrl+J, Alt+Enter", "new line in the message"),
    ("Up / Down", "input history; Up on an empty line edits your last message"),
    ("Tab", "complete a nick or a command"),
    ("Ctrl+W / Ctrl+U", "delete a word / to the start of the line"),
    ("Alt+Up / Alt+Down, click", "select a message (for /reply, /edit, /delete, /react)"),
    ("Escape", "clear the selection"),
    ("PageUp / PageDown", "scroll the timeline; Home / End (in the timeline): top / bottom"),
    ("Ctrl+N / Ctrl+P, Alt+1…9", "next / previous room, room by number"),
    ("F2 / F4 / F1", "members / diagnostics / help"),
    ("Ctrl+Q", "quit"),
)


class CommandError(ValueError):
    """A line that is not a usable command; the message is one line for people."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    arg: str


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class Invite:
    uri: str


def parse(line: str) -> Command | Say | Invite | None:
    """What an input line asks for; None for a blank line. Raises CommandError."""
    stripped = line.strip()
    if not stripped:
        return None
    if stripped.startswith("//"):
        return Say(line.strip("\n")[1:])
    if stripped.startswith(INVITE_SCHEME) and not any(c.isspace() for c in stripped):
        return Invite(stripped)
    if not stripped.startswith("/"):
        return Say(line.strip("\n"))
    name, _, arg = stripped[1:].partition(" ")
    name = name.lower()
    if not name:
        raise CommandError("an empty command: type /help for the list")
    matches = [n for n in COMMANDS if n.startswith(name)]
    if name in COMMANDS:
        matches = [name]
    if not matches:
        raise CommandError(f"unknown command /{name}: type /help for the list")
    if len(matches) > 1:
        raise CommandError(f"/{name} could be " + ", ".join(f"/{m}" for m in matches))
    spec = COMMANDS[matches[0]]
    arg = arg.strip() if spec.name != "me" else arg.strip(" ")
    if spec.needs_arg and not arg:
        raise CommandError(f"usage: /{spec.name} {spec.args}")
    return Command(spec.name, arg)


_TARGET = re.compile(r"^\^(\d+)(?:\s+|$)")


def split_target(arg: str) -> tuple[int | None, str]:
    """``"^3 text"`` -> ``(3, "text")``; ``"text"`` -> ``(None, "text")``."""
    match = _TARGET.match(arg)
    if match is None:
        return None, arg
    return int(match.group(1)), arg[match.end() :]


def complete(text: str, nicks: list[str]) -> list[str]:
    """Completions of the word before the end of `text`: the whole new `text` for each.

    A first word starting with "/" completes command names; any other word completes
    nicks (with ": " after a nick that starts the line, as IRC clients do).
    """
    head, _, word = text.rpartition(" ")
    prefix = f"{head} " if head or text.startswith(" ") else ""
    if not head and word.startswith("/"):
        name = word[1:].lower()
        return [f"/{n} " for n in COMMANDS if n.startswith(name)]
    if not word:
        return []
    lower = word.lower().lstrip("@")
    found = sorted({n for n in nicks if n.lower().startswith(lower)}, key=str.lower)
    suffix = ": " if not head else " "
    return [f"{prefix}{nick}{suffix}" for nick in found]


def help_lines() -> list[tuple[str, str]]:
    """(usage, what it does) for every command, then the keys."""
    rows = [(f"/{s.name} {s.args}".rstrip(), s.help) for s in COMMANDS.values()]
    rows.append(("//TEXT", "send a line that starts with /"))
    rows.append(("^N", "in /reply /edit /delete /react: the N-th newest message"))
    return rows
