"""Modal screens showing text: help, diagnostics, an invite, mentions; and their content
(and the welcome's).

The content builders are pure (data in, `Text` out) so tests and snapshots can use them;
strings from the network go through `_safe.inert_line`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from crdt import Message, format_peer_id, hlc_millis
from node import NodeStatus
from node.client import Me, RoomDiagnostics, RoomInfo

from ._commands import KEYS, help_lines
from ._layout import is_action, nick_style, short_id
from ._safe import inert_line

__all__ = [
    "TextScreen",
    "diagnostics_text",
    "help_text",
    "invite_text",
    "mentions_text",
    "welcome_text",
]


class TextScreen(ModalScreen[None]):
    """A scrollable panel of text over the chat; Escape, q or Enter closes it."""

    DEFAULT_CSS = """
    TextScreen { align: center middle; }
    TextScreen > VerticalScroll {
        width: 90%; max-width: 110; height: auto; max-height: 90%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    TextScreen Static { width: 100%; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,enter", "close", "close"),
    ]

    def __init__(self, title: str, body: Text, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = self.title_text
            scroll.border_subtitle = "Esc to close"
            yield Static(self.body, id="text-body")

    def action_close(self) -> None:
        self.dismiss(None)


def help_text() -> Text:
    text = Text()
    text.append("Commands\n", style="bold underline")
    rows = help_lines()
    width = max(len(usage) for usage, _ in rows) + 2
    for usage, what in rows:
        text.append(usage.ljust(width), style="bold cyan")
        text.append(what + "\n")
    text.append("\nKeys\n", style="bold underline")
    width = max(len(key) for key, _ in KEYS) + 2
    for key, what in KEYS:
        text.append(key.ljust(width), style="bold")
        text.append(what + "\n")
    text.append(
        "\nIn the timeline: ✓ a peer holds your message, ○ stored here only, … being stored;"
        "\n! after a nick: that author signed two versions of its history (a fork).",
        style="dim",
    )
    return text


def _when(ms: int | None, now_ms: int) -> str:
    if ms is None:
        return "never"
    seconds = max((now_ms - ms) // 1000, 0)
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def diagnostics_text(
    info: RoomInfo,
    diagnostics: RoomDiagnostics,
    status: NodeStatus,
    now_ms: int,
    nick: Callable[[bytes], str] = short_id,
) -> Text:
    """Why messages may not be arriving in a room, for people."""
    text = Text()
    text.append(f"#{inert_line(info.name)}", style="bold")
    text.append(f"  {info.id.hex()[:16]}\n", style="dim")
    synced = "caught up" if info.synced else f"syncing: behind {info.behind}"
    text.append(f"{info.messages} messages · {info.members} members · {info.peers} linked · ")
    text.append(synced + "\n", style="green" if info.synced else "cyan")
    address = status.address or "none (dial-out only)"
    dht = "off" if diagnostics.dht_contacts is None else str(diagnostics.dht_contacts)
    text.append(f"our address {address} · DHT contacts {dht} · ")
    text.append("announced in the DHT\n" if diagnostics.announced else "not announced\n")
    text.append(f"links open {len(status.links)} · room proofs refused {status.refusals}\n")
    for name, why in status.failed_rooms:
        text.append(f"room file {name} failed: {inert_line(why)}\n", style="red")
    linked = next((room.peers for room in status.rooms if room.room_id == info.id), ())
    text.append("\nLinked now\n", style="bold underline")
    if not linked:
        text.append("(nobody)\n", style="dim")
    for peer_id in linked:
        text.append("● ", style="green")
        text.append(nick(peer_id), style=nick_style(peer_id))
        text.append(f" {short_id(peer_id)}\n", style="dim")
    # Peers that dialed us are linked without our dialing them: their addresses may
    # show "not linked" below, which is only about our own dials.
    text.append("\nKnown addresses (our dials)\n", style="bold underline")
    if not diagnostics.peers:
        text.append("(none)\n", style="dim")
    for peer in diagnostics.peers:
        state = "linked" if peer.linked else "breaker open" if peer.breaker_open else "not linked"
        style = "green" if peer.linked else "red" if peer.breaker_open else "yellow"
        text.append(f"{inert_line(peer.address):<24} ", style="bold")
        text.append(f"{state:<13}", style=style)
        who = short_id(peer.peer_id) if peer.peer_id else "?"
        text.append(f" peer {who:<8} failures {peer.failures:<3} ")
        text.append(f"last contact {_when(peer.last_contact_ms, now_ms)}\n", style="dim")
    if diagnostics.notes:
        text.append("\nNotes\n", style="bold underline")
        for note in diagnostics.notes:
            text.append(f"• {inert_line(note)}\n")
    text.append(f"\nyou are {format_peer_id(status.peer_id)}", style="dim")
    return text


def invite_text(info: RoomInfo, uri: str) -> Text:
    text = Text()
    text.append(f"Invite to #{inert_line(info.name)}\n\n", style="bold")
    text.append(uri + "\n\n")
    text.append(
        "It is on your clipboard (where the terminal supports OSC 52). Anyone holding it can"
        " read and write this room: share it privately.",
        style="dim",
    )
    return text


def mentions_text(
    found: list[tuple[RoomInfo, Message]],
    nick_of: Callable[[bytes, bytes], str],
    tz: tzinfo | None,
) -> Text:
    """Every message naming you, newest first: room, time, author, text."""
    text = Text()
    if not found:
        text.append("No message names you yet.", style="dim")
        return text
    for info, message in found:
        when = datetime.fromtimestamp(hlc_millis(message.hlc) / 1000, tz).strftime("%d %b %H:%M")
        text.append(f"#{inert_line(info.name)[:16]:<16} ", style="bold")
        text.append(f"{when} ", style="dim")
        body = inert_line(message.text)
        nick = nick_of(info.id, message.author)
        if is_action(message.text):
            text.append(f"* {nick}", style=nick_style(message.author))
            body = body[3:]
        else:
            text.append(f"<{nick}>", style=nick_style(message.author))
        text.append(f" {body[:200]}\n")
    return text


def welcome_text(me: Me) -> Text:
    """The first screen: who you are and the three ways to start."""
    text = Text()
    text.append("Welcome to rumor\n\n", style="bold")
    text.append("A chat with no server: your messages live on your machine and on the")
    text.append(" machines of the people in your rooms.\n\n")
    if me.peer_id:
        text.append("You are ")
        text.append(short_id(me.peer_id), style="bold")
        text.append(f"{' (' + inert_line(me.nick) + ')' if me.nick else ''}.\n\n")
    text.append("1. ", style="bold")
    text.append("pick a nick:        ")
    text.append("/nick NAME\n", style="bold cyan")
    text.append("2. ", style="bold")
    text.append("create a room:      ")
    text.append("/create NAME\n", style="bold cyan")
    text.append("   ", style="bold")
    text.append("or join one:        ")
    text.append("paste an invite (rumor://…)\n\n", style="bold cyan")
    text.append("F1 or /help lists every command; Ctrl+Q quits.", style="dim")
    return text
