"""The `rumor` command line's arguments: the parser, its option types and the version.

Parsing only: what each command does lives in `cli.py`, and the shell's chat commands in
`_shell.py`. A bad argument is argparse's one line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, NoReturn

from .._addresses import parse_address
from ..client._remote import parse_control_address
from ._inbox import default_data_dir

__all__ = ["DATA_DIR_ENV", "DEBUG_ENV", "build_parser", "package_version"]

DEBUG_ENV: Final = "RUMOR_DEBUG"  # set (to anything) for tracebacks with the error lines
DATA_DIR_ENV: Final = "RUMOR_DATA_DIR"  # the data dir when --data-dir is not given


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


def build_parser() -> argparse.ArgumentParser:
    """The whole `rumor` command line (`rumor swarm`'s own arguments excepted)."""
    parser = _Parser(prog="rumor", description="A self-hosted peer-to-peer chat node.")
    parser.add_argument("--version", action="version", version=f"rumor {package_version()}")
    parser.add_argument(
        "--debug", action="store_true", help=f"print tracebacks with errors (or set {DEBUG_ENV}=1)"
    )
    data_dir_help = f"the node's data dir (default: ${DATA_DIR_ENV}, else {default_data_dir()})"
    parser.add_argument("--data-dir", type=Path, metavar="DIR", help=data_dir_help)
    # A subcommand's own --data-dir must not reset the top-level one to its default:
    # argparse copies a subparser's defaults over what the main parser read.
    data_dir_option: dict[str, Any] = {
        "type": Path,
        "metavar": "DIR",
        "help": data_dir_help,
        "default": argparse.SUPPRESS,
    }
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    init = commands.add_parser("init", help="create the identity and config file")
    init.add_argument("--data-dir", **data_dir_option)
    _add_node_options(init)

    run = commands.add_parser(
        "run",
        help="run the node until SIGINT, SIGTERM or SIGHUP",
        description="Run the node, joining every room in the data dir. Options override "
        "config.toml. Rooms created or joined meanwhile (rumor create/join) are picked up "
        "within a second. SIGINT, SIGTERM and SIGHUP stop it cleanly.",
    )
    run.add_argument("--data-dir", **data_dir_option)
    _add_node_options(run)
    run.add_argument(
        "--control",
        type=_control_type,
        metavar="ADDRESS",
        help="serve the control API here: HOST:PORT, unix:PATH, or off "
        "(default: 127.0.0.1, any free port; recorded in DATA_DIR/control.json)",
    )
    run.add_argument(
        "--control-allow-remote",
        action="store_true",
        help="accept control clients from other hosts (needs a --control address that is "
        "not loopback; the token still guards it, but nothing encrypts it: use a tunnel)",
    )
    run.add_argument(
        "--log-format",
        choices=["auto", "text", "plain", "json"],
        default="auto",
        help="text: with timestamps; plain: one line per event without them (journald and "
        "docker add their own); json: one object per line; auto: text on a terminal, else "
        "plain",
    )

    attach = commands.add_parser(
        "attach", help="open the terminal UI against a running node (rumor run)"
    )
    attach.add_argument(
        "address",
        nargs="?",
        metavar="ADDRESS",
        help="the node's control address (HOST:PORT or unix:PATH; default: the data dir's "
        "running node)",
    )
    attach.add_argument("--data-dir", **data_dir_option)
    attach.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="the node's control token (default: DATA_DIR/control.token)",
    )

    rooms = commands.add_parser("rooms", help="list the rooms: name, id, members, synced")
    rooms.add_argument("--json", action="store_true", help="one JSON object per line")
    rooms.add_argument("--data-dir", **data_dir_option)

    room_help = "the room: its name, or a prefix of its id in hex"
    send = commands.add_parser("send", help="send a message to a room")
    send.add_argument("room", metavar="ROOM", help=room_help)
    send.add_argument("text", metavar="TEXT", help="the message; - reads it from stdin")
    send.add_argument("--data-dir", **data_dir_option)

    history = commands.add_parser("history", help="print a room's latest messages")
    history.add_argument("room", metavar="ROOM", help=room_help)
    history.add_argument(
        "--limit", type=_positive, default=20, metavar="N", help="how many (default 20)"
    )
    history.add_argument("--json", action="store_true", help="one JSON object per message")
    history.add_argument("--data-dir", **data_dir_option)

    tail = commands.add_parser("tail", help="print a room's new messages as they come")
    tail.add_argument("room", metavar="ROOM", help=room_help)
    tail.add_argument(
        "--lines",
        type=_count,
        default=10,
        metavar="N",
        help="print the last N messages first (default 10)",
    )
    tail.add_argument("--json", action="store_true", help="one JSON object per message")
    tail.add_argument("--data-dir", **data_dir_option)

    invite = commands.add_parser("invite", help="print a room's invite again")
    invite.add_argument("room", metavar="ROOM", help=room_help)
    invite.add_argument("--data-dir", **data_dir_option)

    nick = commands.add_parser("nick", help="set your nickname in every room")
    nick.add_argument("name", metavar="NAME")
    nick.add_argument("--data-dir", **data_dir_option)

    status = commands.add_parser(
        "status",
        help="links, DHT contacts, each room's sync state; exit 1 if unhealthy, 3 if stopped",
    )
    status.add_argument("--json", action="store_true", help="the status as one JSON object")
    status.add_argument("--data-dir", **data_dir_option)

    leave = commands.add_parser("leave", help="leave a room (its history is kept aside)")
    leave.add_argument("room", metavar="ROOM", help=room_help)
    leave.add_argument("--data-dir", **data_dir_option)

    create = commands.add_parser("create", help="create a room and print its invite")
    create.add_argument("name", metavar="NAME", help="the room's name (local to each member)")
    create.add_argument("--data-dir", **data_dir_option)

    join = commands.add_parser("join", help="join the room an invite names")
    join.add_argument("invite", metavar="INVITE", help="a rumor://invite/... URI")
    join.add_argument("--data-dir", **data_dir_option)

    demo = commands.add_parser(
        "demo",
        help="the UI with its own node and three bot nodes on loopback, chatting in a demo room",
    )
    demo.add_argument(
        "--headless",
        action="store_true",
        help="no UI: run the swarm, print the conversation, exit 0 once all converged",
    )
    # (Its own --data-dir, default None: the demo never takes the node's data dir.)
    demo.add_argument(
        "--data-dir", type=Path, help="keep the nodes' data dirs here (default: a temp dir)"
    )

    # Listed for `rumor --help` only: `main` hands what follows `swarm` to the swarm tool
    # before this parser sees it (argparse.REMAINDER would not take a leading option).
    commands.add_parser(
        "swarm",
        help="run a swarm scenario (simulated or real) and write its report",
        add_help=False,
    )
    return parser


def _control_type(text: str) -> str:
    if text == "off":
        return text
    try:
        parse_control_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return int(text)


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    return int(text)


def package_version() -> str:
    """The installed package's version: pyproject.toml is its one source."""
    try:
        return importlib.metadata.version("rumor")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown"
