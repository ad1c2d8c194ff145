"""Chat from the shell: `rumor rooms`, `send`, `history`, `tail`, `invite`, `nick`,
`status` and `leave`.

Each talks to the data dir's node through one `ChatClient`: the running node's control API,
or, when none runs, the node opened here without links or DHT (what is written then goes
out when the node runs next). Another command holding the data dir is waited for, at most
`LOCK_WAIT` seconds per holder. Text from the network is printed inert: it never steers
the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final

import msgpack
import trio

from crdt import MAX_BODY_BYTES, Message, MessageAdded, format_peer_id, hlc_millis
from crdt._op import MAX_NICK_BYTES  # (not re-exported by crdt)

from .._addresses import short_peer_id
from .._invite import Invite, parse_invite
from .._node import Node
from ..client import ChatClient, LocalClient, RoomChanged, RoomInfo
from ..client._remote import ConnectionLost, RemoteClient, read_control_record
from ._config import Config
from ._inbox import Holder, LockHeld, hold_lock

__all__ = ["LOCK_POLL", "LOCK_WAIT", "CommandError", "LockWait", "require_name", "shell_command"]


NICK_WAIT: Final = 15.0  # seconds `rumor nick` waits for the rooms to show the new nick (a
# node opened by the command may write in a room only after its 10 s own-chain grace)
NOT_RUNNING: Final = 3  # `rumor status` when no node runs (as LSB init scripts say)
# The longest message text an op holds: its body, [text, reply_to] in msgpack, is at most
# MAX_BODY_BYTES (crdt/_op.py); a text that long has a 3-byte header, the array and a nil
# reply one byte each.
MAX_MESSAGE_BYTES: Final = MAX_BODY_BYTES - (len(msgpack.packb([" " * 256, None])) - 256)
LOCK_WAIT: Final = 30.0  # seconds a command waits for one other process to free the data dir
LOCK_POLL: Final = 0.05


class CommandError(Exception):
    """A command that cannot be done as asked; the message is one line for people."""


def require_name(text: str, what: str) -> None:
    """One line if a name given on the command line is empty or blank."""
    if not text.strip():
        raise CommandError(f"{what} cannot be empty or blank")


@contextlib.asynccontextmanager
async def _open_client(data_dir: Path) -> AsyncIterator[tuple[ChatClient, bool]]:
    """A client of the data dir's node: the running one's control API (True), or, when
    none runs, the node opened here without links or DHT (False): what is written then
    goes out when the node runs next. Another command holding the data dir is waited for
    (at most LOCK_WAIT seconds)."""
    async with contextlib.AsyncExitStack() as stack:
        wait = LockWait(data_dir, trio.current_time)
        while True:
            try:
                stack.enter_context(hold_lock(data_dir))
            except LockHeld as held:
                remote = await _node_client(stack, data_dir, held.holder)
                if remote is not None:
                    break
                wait.check(held.holder)
                await trio.sleep(LOCK_POLL)
                continue
            remote = None
            break
        if remote is not None:
            yield remote, True
            return
        try:
            async with Node.open(data_dir, listen=None, dht_port=None, verify_workers=0) as node:
                yield LocalClient(node), False
        except ValueError as exc:
            # The node's word for stored data it cannot use (a bad nick in settings.json).
            raise CommandError(f"cannot open the node in {data_dir}: {exc}") from None


async def _node_client(
    stack: contextlib.AsyncExitStack, data_dir: Path, holder: Holder
) -> ChatClient | None:
    """A client of the node holding the data dir's lock, or None if the holder is not a
    node serving its control API (another command, or a node still starting)."""
    try:
        pid, _ = read_control_record(data_dir)
    except ConnectionLost:  # no control.json
        return None
    if pid is None or pid != holder.pid:
        return None  # left behind by a node that was killed: the holder is someone else
    client: ChatClient = await stack.enter_async_context(RemoteClient.connect(data_dir))
    return client


class LockWait:
    """How long the data dir's lock has been held by one process while we wait for it:
    CommandError once one holder keeps it LOCK_WAIT seconds. Commands queued behind each
    other take their turns, so each new holder starts the count again."""

    def __init__(self, data_dir: Path, clock: Callable[[], float]) -> None:
        self._data_dir = data_dir
        self._clock = clock
        self._holder: int | None = None
        self._since = clock()

    def check(self, holder: Holder) -> None:
        now = self._clock()
        if holder.pid is not None and holder.pid != self._holder:
            self._holder, self._since = holder.pid, now
        elif now - self._since >= LOCK_WAIT:
            pid = f" (pid {holder.pid})" if holder.pid else ""
            raise CommandError(
                f"data dir {self._data_dir} busy: another rumor process{pid} has held it for "
                f"{LOCK_WAIT:g} s (a command still at work, or a rumor run with --control off)"
            )


def _find_room(rooms: list[RoomInfo], text: str) -> RoomInfo:
    """The room named `text`, or whose id starts with the hex `text`; CommandError if
    none or several."""
    if not text.strip():
        raise CommandError("a room name cannot be empty or blank")
    named = [room for room in rooms if room.name == text]
    if not named:
        prefix = text.lower()
        if all(c in "0123456789abcdef" for c in prefix):
            named = [room for room in rooms if room.id.hex().startswith(prefix)]
    if len(named) == 1:
        return named[0]
    if not named:
        raise CommandError(f"no room {text!r} on this node (rumor rooms lists them)")
    ids = ", ".join(room.id.hex()[:8] for room in named[:5])
    raise CommandError(f"{text!r} names {len(named)} rooms ({ids}): give more of the id")


async def shell_command(data_dir: Path, config: Config, args: argparse.Namespace) -> int:
    command: str = args.command
    text = ""
    if command == "send":
        text = _read_stdin() if args.text == "-" else args.text
        if not text.strip():
            raise CommandError("an empty message is not sent")
        _check_size(text, MAX_MESSAGE_BYTES, "a message")
    if command == "nick":
        require_name(args.name, "a nick")
        _check_size(args.name, MAX_NICK_BYTES, "a nick")
    async with _open_client(data_dir) as (client, running):
        if command == "rooms":
            for info in await client.rooms():
                _print_room(info, as_json=args.json)
            return 0
        if command == "nick":
            await client.set_nick(args.name)
            await _until_nick_said(client, args.name)
            return 0
        if command == "status":
            return await _status(client, running, as_json=args.json)
        room = _find_room(await client.rooms(), args.room)
        if command == "send":
            message_id = await client.send(room.id, text)
            print(message_id.hex())
            if not running:
                _note(f"no node is running on {data_dir}: stored; it goes out with rumor run")
            return 0
        if command == "history":
            for message in await _latest(client, room.id, args.limit):
                _print_message(message, room, await _nicks(client, room.id), args.json)
            return 0
        if command == "tail":
            return await _tail(client, room, args.lines, as_json=args.json)
        if command == "invite":
            invite = await client.invite(room.id)
            if not running:
                parsed = parse_invite(invite)
                address = config.invite_address
                peers = (address, *parsed.peers) if address else parsed.peers
                invite = Invite(parsed.room, parsed.secret, parsed.name, peers[:4]).to_uri()
            print(invite)
            return 0
        if command == "leave":
            await client.leave(room.id)
            _note(f"left room {room.id.hex()[:8]} {room.name!r}")
            return 0
    raise AssertionError(f"unknown command {command}")  # argparse allows no other


def _check_size(text: str, limit: int, what: str) -> None:
    """CommandError, in the user's terms, for text over what an op may hold: checked here,
    before anything is sent, so the node's own refusal (or the frame limit) is not the
    first word."""
    size = len(text.encode("utf-8"))
    if size > limit:
        raise CommandError(f"{what} is at most {limit} bytes; this one is {size}")


def _read_stdin() -> str:
    """The message on stdin, strictly UTF-8 (the text stream's error handler may be
    surrogateescape, which lets bytes through that no op can hold), less trailing newlines."""
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8").rstrip("\n")
    except UnicodeDecodeError as exc:
        raise CommandError(
            f"the message on stdin is not UTF-8 text (byte {exc.start}: {data[exc.start]:#04x})"
        ) from None


# Characters from the network that a terminal would act on instead of showing: C0 and C1
# controls, DEL, bidi embeddings, overrides, isolates and marks (which reorder what follows
# them on the line), line separators. The UI's set (tui/_safe.py); newline and tab are
# the callers' to handle.
_UNSAFE: Final = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
REPLACEMENT: Final = "\N{REPLACEMENT CHARACTER}"  # the visible mark, as in the UI


def _inert(text: str) -> str:
    """`text` safe to print: every unsafe character shown as U+FFFD, tabs as spaces."""
    return _UNSAFE.sub(REPLACEMENT, text.replace("\t", "    "))


def _flat(text: str) -> str:
    """`_inert` on one line, whitespace runs as one space (names, nicks, reasons)."""
    return " ".join(_inert(text).split())


def _json_line(entry: dict[str, Any]) -> str:
    """`entry` as one line of JSON with the exact data, the unsafe characters escaped
    (json.dumps escapes C0 controls only), so a terminal showing it is not steered."""
    text = json.dumps(entry, ensure_ascii=False)
    return _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


async def _until_nick_said(client: ChatClient, nick: str) -> None:
    """Wait (at most NICK_WAIT seconds) until every room shows the nick: a node opened just
    for this command may say it in a room only once that room's own chain is loaded, and
    must not be closed before."""
    me = (await client.me()).peer_id
    with trio.move_on_after(NICK_WAIT):
        for room in await client.rooms():
            while True:
                members = {m.peer_id: m.nick for m in await client.members(room.id)}
                if members.get(me) == nick:
                    break
                await trio.sleep(0.05)


def _note(text: str) -> None:
    print(f"rumor: {text}", file=sys.stderr)


def _print_room(info: RoomInfo, *, as_json: bool) -> None:
    if as_json:
        entry = {
            "id": info.id.hex(),
            "name": info.name,
            "topic": info.topic,
            "members": info.members,
            "peers": info.peers,
            "messages": info.messages,
            "synced": info.synced,
            "behind": info.behind,
        }
        print(_json_line(entry), flush=True)
        return
    sync = "synced" if info.synced else f"syncing ({info.behind} behind)"
    print(
        f"{_flat(info.name) or '-'}\t{info.id.hex()[:8]}\t{info.members} members\t"
        f"{info.peers} linked\t{sync}",
        flush=True,
    )


async def _latest(client: ChatClient, room_id: bytes, limit: int) -> list[Message]:
    """The newest `limit` messages, oldest first, paging by 1000."""
    messages: list[Message] = []
    before: bytes | None = None
    while len(messages) < limit:
        page = await client.history(room_id, before=before, limit=min(1000, limit - len(messages)))
        messages[:0] = page.messages
        if not page.more_before or not page.messages:
            break
        before = page.messages[0].id
    return messages


async def _nicks(client: ChatClient, room_id: bytes) -> dict[bytes, str]:
    return {m.peer_id: m.nick for m in await client.members(room_id) if m.nick}


def _print_message(
    message: Message, room: RoomInfo, nicks: dict[bytes, str], as_json: bool
) -> None:
    millis = hlc_millis(message.hlc)
    if as_json:
        entry = {
            "room": room.id.hex(),
            "id": message.id.hex(),
            "author": format_peer_id(message.author),
            "nick": nicks.get(message.author),
            "time_ms": millis,
            "text": message.text,
            "reply_to": message.reply_to.hex() if message.reply_to else None,
            "edited": message.edited,
            "deleted": message.deleted,
            "reactions": {
                emoji: [format_peer_id(p) for p in who] for emoji, who in message.reactions
            },
        }
        print(_json_line(entry), flush=True)
        return
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(millis / 1000))
    author = nicks.get(message.author) or short_peer_id(message.author)
    text = "(deleted)" if message.deleted else " ⏎ ".join(_inert(message.text).splitlines())
    flags = " (edited)" if message.edited and not message.deleted else ""
    reactions = "".join(f"  {_flat(emoji)}{len(who)}" for emoji, who in message.reactions)
    print(f"{when} <{_flat(author)}> {text}{flags}{reactions}", flush=True)


async def _tail(client: ChatClient, room: RoomInfo, lines: int, *, as_json: bool) -> int:
    """The last `lines` messages, then each new one as it arrives, until interrupted."""
    async with client.events() as events:  # before the history: nothing falls in between
        shown: set[bytes] = set()
        nicks = await _nicks(client, room.id)
        if lines:
            for message in await _latest(client, room.id, lines):
                shown.add(message.id)
                _print_message(message, room, nicks, as_json)
        async for event in events:
            if not (
                isinstance(event, RoomChanged)
                and event.room_id == room.id
                and isinstance(event.change, MessageAdded)
                and event.change.id not in shown
            ):
                continue
            new = await client.message(room.id, event.change.id)
            if new is None:
                continue
            if new.author not in nicks:
                nicks = await _nicks(client, room.id)
            shown.add(new.id)
            _print_message(new, room, nicks, as_json)
    return 0


async def _status(client: ChatClient, running: bool, *, as_json: bool) -> int:
    """Print the node's status; 0 healthy, 1 unhealthy, NOT_RUNNING when no node runs."""
    status = await client.status()
    rooms = {info.id: info for info in await client.rooms()}
    problems = [f"room file {name} stopped: {why}" for name, why in status.failed_rooms]
    lonely = [info for info in rooms.values() if info.members > 1]
    if running and lonely and not status.links and not status.dht_contacts:
        problems.append("isolated: no links and no DHT contacts, so no member can be reached")
    if not running:
        problems.insert(0, "no node is running on this data dir")
    if as_json:
        entry = {
            "running": running,
            "healthy": not problems,
            "problems": problems,
            "peer_id": format_peer_id(status.peer_id),
            "address": status.address,
            "links": [format_peer_id(p) for p in status.links],
            "dht_contacts": status.dht_contacts,
            "refusals": status.refusals,
            "rooms": [
                {
                    "id": room.room_id.hex(),
                    "name": room.name,
                    "synced": room.synced,
                    "behind": room.behind,
                    "held": room.held,
                    "ops": room.ops,
                    "peers": [format_peer_id(p) for p in room.peers],
                    "received": room.received,
                    "sent": room.sent,
                    "rejected": dict(room.rejected),
                    "penalties": room.penalties,
                }
                for room in status.rooms
            ],
            "failed_rooms": dict(status.failed_rooms),
        }
        print(_json_line(entry))
    else:
        state = "running" if running else "not running"
        print(f"node {format_peer_id(status.peer_id)} ({state})")
        print(f"links: {len(status.links)}" + "".join(f" {short_peer_id(p)}" for p in status.links))
        print(f"address: {status.address or '-'}")
        dht = "off" if status.dht_contacts is None else f"{status.dht_contacts} contacts"
        print(f"DHT: {dht}")
        for room in status.rooms:
            sync = "synced" if room.synced else f"syncing: {room.behind} behind, {room.held} held"
            rejected = sum(count for _, count in room.rejected)
            extra = f", {rejected} rejected" if rejected else ""
            extra += f", {room.penalties} penalties" if room.penalties else ""
            print(
                f"room {room.room_id.hex()[:8]} {_flat(room.name)!r}: {sync}; "
                f"{len(room.peers)} linked, {room.ops} ops{extra}"
            )
        for name, why in status.failed_rooms:
            print(f"failed room {name}: {_flat(why)}")
        print("health: " + ("ok" if not problems else "; ".join(problems)))
    if not running:
        return NOT_RUNNING
    return 1 if problems else 0
