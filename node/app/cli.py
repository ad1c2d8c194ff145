"""The `rumor` command line.

    rumor init    create the identity and config.toml in the data dir
    rumor run     a long-running headless node (`node._headless`)
    rumor create  create a room and print its invite
    rumor join    store the room an invite names
    rumor demo    two replicas of one room write apart, sync, and converge

`create` and `join` store the room themselves when no node runs on the data dir; while a
`rumor run` holds the data dir's lock they hand the invite to it through the data dir's
inbox instead (`node._datadir`), so two processes never open the same room. Bad
arguments, a bad invite, a bad config file or an unusable data dir give one line on
stderr and a non-zero exit (2 for usage, 1 for the rest), never a traceback. A bug gives
one "internal error" line and exit status 70; `rumor --debug` (or RUMOR_DEBUG=1) adds
the traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import secrets
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, NoReturn

import trio

from crdt import History, Identity, IdentityError, Kind, Message, StoreError, Verifier

from .._addresses import parse_address
from .._datadir import DataDir
from .._invite import Invite, InviteError, parse_invite
from .._node import Node
from ._config import CONFIG_FILE, Config, ConfigError, load_config, write_config
from ._inbox import (
    DataDirError,
    LockHeld,
    default_data_dir,
    hold_lock,
    queue_invite,
    require_initialised,
)
from ._run import RunError, run_node

__all__ = ["main"]

DEBUG_ENV: Final = "RUMOR_DEBUG"  # set (to anything) for tracebacks with the error lines
INTERNAL_ERROR: Final = 70  # EX_SOFTWARE (sysexits.h): a bug, not a user's mistake


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _address_type(*, ip_only: bool = False, allow_zero: bool = True) -> Callable[[str], str]:
    """An argparse type for host:port options: argparse shows the error's own words."""

    def check(text: str) -> str:
        try:
            parse_address(text, ip_only=ip_only, allow_zero=allow_zero)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return check


def _port(text: str) -> int:
    # ASCII digits only: str.isdigit() also takes '²' and '١٢٣٤'.
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port number 0-65535: {text!r}")
    return int(text)


def _add_node_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        type=_address_type(ip_only=True),
        metavar="HOST:PORT",
        help="accept links from peers here (TCP; an IP address; port 0: any free port)",
    )
    parser.add_argument(
        "--advertise",
        type=_address_type(allow_zero=False),
        metavar="HOST:PORT",
        help="the address put in invites and DHT records",
    )
    parser.add_argument(
        "--dht-port",
        type=_port,
        metavar="N",
        help="UDP port of the DHT node, on the listen host (0: any free port)",
    )
    parser.add_argument(
        "--bootstrap",
        type=_address_type(allow_zero=False),
        nargs="+",
        action="extend",
        metavar="HOST:PORT",
        help="DHT nodes to join through",
    )
    parser.add_argument(
        "--metrics",
        type=_address_type(),
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics",
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rumor", description="A self-hosted peer-to-peer chat node.")
    parser.add_argument("--version", action="version", version="rumor 0.1.0")
    parser.add_argument(
        "--debug", action="store_true", help=f"print tracebacks with errors (or set {DEBUG_ENV}=1)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    data_dir_help = f"the node's data dir (default: {default_data_dir()})"

    init = commands.add_parser("init", help="create the identity and config file")
    init.add_argument("--data-dir", type=Path, metavar="DIR", help=data_dir_help)
    _add_node_options(init)

    run = commands.add_parser(
        "run",
        help="run the node until SIGINT, SIGTERM or SIGHUP",
        description="Run the node, joining every room in the data dir. Options override "
        "config.toml. Rooms created or joined meanwhile (rumor create/join) are picked up "
        "within a second. SIGINT, SIGTERM and SIGHUP stop it cleanly.",
    )
    run.add_argument("--data-dir", type=Path, metavar="DIR", help=data_dir_help)
    _add_node_options(run)

    create = commands.add_parser("create", help="create a room and print its invite")
    create.add_argument("name", metavar="NAME", help="the room's name (local to each member)")
    create.add_argument("--data-dir", type=Path, metavar="DIR", help=data_dir_help)

    join = commands.add_parser("join", help="join the room an invite names")
    join.add_argument("invite", metavar="INVITE", help="a rumor://invite/... URI")
    join.add_argument("--data-dir", type=Path, metavar="DIR", help=data_dir_help)

    demo = commands.add_parser(
        "demo", help="two replicas of one room write apart, sync, and converge"
    )
    demo.add_argument(
        "--data-dir", type=Path, help="keep the two histories here (default: a temp dir)"
    )
    return parser


def _leaf(error: BaseException) -> BaseException:
    """The one error inside nested single-error groups (trio nurseries wrap errors)."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


class CommandError(Exception):
    """A command that cannot be done as asked; the message is one line for people."""


# Errors that are the user's to fix (arguments, files, the data dir): one line, status 1.
_USER_ERRORS = (
    CommandError,
    ConfigError,
    DataDirError,
    InviteError,
    IdentityError,
    RunError,
    StoreError,
    OSError,
)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 0
    debug = args.debug or bool(os.environ.get(DEBUG_ENV))
    try:
        try:
            return _dispatch(args)
        except BaseExceptionGroup as group:
            raise _leaf(group) from None
    except _USER_ERRORS as exc:
        if debug:
            traceback.print_exc()
        print(f"rumor: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # A bug of ours, not the user's doing: still one line, the traceback on request.
        if debug:
            traceback.print_exc()
        hint = "" if debug else f" (for the traceback: rumor --debug, or {DEBUG_ENV}=1)"
        print(
            f"rumor: internal error: {type(exc).__name__}: {_one_line(exc)}{hint}",
            file=sys.stderr,
        )
        return INTERNAL_ERROR


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        if args.data_dir is not None:
            return trio.run(_demo, args.data_dir)
        with tempfile.TemporaryDirectory(prefix="rumor-demo-") as tmp:
            return trio.run(_demo, Path(tmp))
    data_dir: Path = args.data_dir if args.data_dir is not None else default_data_dir()
    if args.command == "init":
        return _init(data_dir, args)
    require_initialised(data_dir)
    config = load_config(data_dir / CONFIG_FILE)
    if args.command == "run":
        return _run(data_dir, config.override(**_node_options(args)))
    if args.command == "create":
        room = Invite(secrets.token_bytes(32), secrets.token_bytes(32), args.name)
        return _deliver(data_dir, config, room, announce=True)
    return _deliver(data_dir, config, parse_invite(args.invite), announce=False)


def _node_options(args: argparse.Namespace) -> dict[str, object]:
    return {
        "listen": args.listen,
        "advertise": args.advertise,
        "dht_port": args.dht_port,
        "bootstrap": args.bootstrap,
        "metrics": args.metrics,
    }


def _init(data_dir: Path, args: argparse.Namespace) -> int:
    config_path = data_dir / CONFIG_FILE
    if config_path.exists():
        raise DataDirError(f"{data_dir} is already initialised; nothing changed")
    config = Config().override(**_node_options(args))
    data_dir.mkdir(parents=True, exist_ok=True)
    # An identity already there (a data dir the TUI or an embedder made) is kept.
    identity = Identity.load_or_create(DataDir(data_dir).identity)
    write_config(config_path, config)
    print(identity.peer_id_text)
    print(f"rumor: initialised {data_dir}; settings in {config_path}", file=sys.stderr)
    return 0


def _run(data_dir: Path, config: Config) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    with hold_lock(data_dir) as lock:
        return trio.run(run_node, data_dir, config, lock)


def _deliver(data_dir: Path, config: Config, invite: Invite, *, announce: bool) -> int:
    """Store the room of `invite` (through the running node, if there is one); print the
    invite for others if `announce`, else what happened."""
    try:
        with hold_lock(data_dir):
            try:
                trio.run(_store_room, data_dir, invite, announce)
            except BaseException:
                if announce:
                    # Nobody has its invite: a half-made new room is nobody's history.
                    _remove_room_file(data_dir, invite.room)
                raise
            running = None
    except LockHeld as held:
        queue_invite(data_dir, invite.to_uri(), new_room=announce)
        running = held.holder
    if announce:
        # The running node's address if it told us, else the configured one.
        address = running.address if running and running.address else config.invite_address
        peers = (address,) if address else ()
        print(Invite(invite.room, invite.secret, invite.name, peers).to_uri())
    elif running is None:
        print(f"joined room {invite.room.hex()[:8]} {invite.name!r}")
    if running is not None:
        pid = f" (pid {running.pid})" if running.pid else ""
        print(
            f"rumor: handed to the node running on {data_dir}{pid}; it joins the room "
            "within a second",
            file=sys.stderr,
        )
    return 0


async def _store_room(data_dir: Path, invite: Invite, new_room: bool) -> None:
    """Store the room `invite` names: a room we create (`new_room`), or one we join."""
    # No DHT and loopback only: this node lives just long enough to store the room.
    try:
        async with Node.open(
            data_dir, listen="127.0.0.1:0", dht_port=None, verify_workers=0
        ) as node:
            if new_room:
                await node.create_room(invite.name, room_id=invite.room, secret=invite.secret)
            else:
                await node.join(invite)
    except InviteError:
        raise
    except ValueError as exc:
        # The node's word for stored data it cannot use (a bad nick in settings.json, say).
        raise CommandError(f"cannot store the room in {data_dir}: {exc}") from None


def _remove_room_file(data_dir: Path, room: bytes) -> None:
    path = DataDir(data_dir).room_file(room)
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


async def _demo(data_dir: Path) -> int:
    room = hashlib.blake2b(b"rumor demo room", digest_size=32).digest()
    alice, bob = Identity.generate(), Identity.generate()
    names = {alice.peer_id: "alice", bob.peer_id: "bob"}
    async with (
        Verifier.open() as verifier,
        History.open(
            data_dir / "alice" / "room.sqlite3", room=room, identity=alice, verifier=verifier
        ) as a,
        History.open(
            data_dir / "bob" / "room.sqlite3", room=room, identity=bob, verifier=verifier
        ) as b,
    ):
        # Apart: each writes without seeing the other.
        await a.author(Kind.JOIN, ())
        await a.author(Kind.NICK, ("alice",))
        await a.author(Kind.TOPIC, ("weekend plans",))
        hike, _ = await a.author(Kind.MESSAGE, ("hike on saturday?", None))
        await b.author(Kind.JOIN, ())
        await b.author(Kind.NICK, ("bob",))
        await b.author(Kind.TOPIC, ("saturday: hike",))
        await b.author(Kind.MESSAGE, ("anyone up for a hike?", None))
        print("before sync:")
        _show("alice", a, names)
        _show("bob", b, names)

        # Together: each sends what the other's version vector lacks.
        to_bob = [op.data for op in a.replica.missing_for(b.replica.version_vector())]
        to_alice = [op.data for op in b.replica.missing_for(a.replica.version_vector())]
        await b.ingest(to_bob)
        await a.ingest(to_alice)
        await b.author(Kind.REACT, (hike.id, "👍"))
        await a.author(Kind.EDIT, (hike.id, "hike on saturday? 9am at the station"))
        await a.ingest([op.data for op in b.replica.missing_for(a.replica.version_vector())])
        await b.ingest([op.data for op in a.replica.missing_for(b.replica.version_vector())])
        print("after sync:")
        _show("alice", a, names)
        _show("bob", b, names)
        same = a.replica.render() == b.replica.render()
        print(
            f"converged: {'yes' if same else 'NO'} ({len(a.replica)} ops each, "
            f"stored in {data_dir})"
        )
        return 0 if same else 1


def _show(who: str, history: History, names: dict[bytes, str]) -> None:
    replica = history.replica
    print(f"  {who}'s view  topic: {replica.topic!r}")
    for message in replica.timeline():
        print(f"    {_line(message, names)}")


def _line(message: Message, names: dict[bytes, str]) -> str:
    author = names.get(message.author, message.author.hex()[:8])
    flags = " (edited)" if message.edited else ""
    reactions = "".join(f"  {emoji}{len(who)}" for emoji, who in message.reactions)
    return f"<{author}> {message.text}{flags}{reactions}"


if __name__ == "__main__":
    raise SystemExit(main())
