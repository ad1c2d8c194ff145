"""The `rumor` command line.

    rumor              the terminal UI (attached to the data dir's node if one runs)
    rumor init         create the identity, config.toml and control token in the data dir
    rumor run          a long-running headless node (`node.app._run`) with its control API
    rumor attach       the terminal UI against a running node
    rumor create/join  create a room and print its invite / store the room an invite names
    rumor rooms, send, history, tail, invite, nick, status, leave
                       chat from the shell: through the running node's control API, or,
                       when none runs, by opening the data dir (the same `ChatClient` code)
    rumor demo         a swarm of bot nodes on loopback in a demo room
    rumor swarm        the swarm tool (`node.swarm`): everything after it is its own

`RUMOR_DATA_DIR` stands for `--data-dir` wherever that option is taken, before or after
the command. The shell commands take any data dir with an identity (one the UI made has
no config.toml: they go by the UI's node options then); `rumor run` wants `rumor init`'s.

`create` and `join` store the room themselves when no node runs on the data dir; while a
`rumor run` holds the data dir's lock they hand the invite to it through the data dir's
inbox instead (`node._datadir`), so two processes never open the same room. A command
finding the lock held by another command waits its turn (`LOCK_WAIT` per holder). Bad
arguments, a bad invite, a bad config file or an unusable data dir give one line on
stderr and a non-zero exit (2 for usage, 1 for the rest), never a traceback; a closed
stdout ends the command quietly with status 141. A bug gives one "internal error" line
and exit status 70; `rumor --debug` (or RUMOR_DEBUG=1) adds the traceback. Text from the
network is printed inert: it never steers the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import importlib.metadata
import json
import logging
import os
import re
import secrets
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

import msgpack
import trio

from crdt import (
    MAX_BODY_BYTES,
    Identity,
    IdentityError,
    Message,
    MessageAdded,
    StoreError,
    format_peer_id,
    hlc_millis,
)
from crdt._op import MAX_NICK_BYTES  # (not re-exported by crdt)
from rumor_runtime import lone_error

from .._addresses import parse_address, short_peer_id
from .._datadir import DataDir
from .._invite import Invite, InviteError, check_room_name, parse_invite, reachability_problem
from .._node import Node
from ..client import ChatClient, ClientError, LocalClient, RoomChanged, RoomInfo
from ..client._remote import (
    ConnectionLost,
    RemoteClient,
    parse_control_address,
    read_control_record,
)
from ._config import CONFIG_FILE, Config, ConfigError, load_config, write_config
from ._control import ensure_token
from ._demo import open_demo_client, run_headless
from ._inbox import (
    DataDirError,
    Holder,
    LockHeld,
    default_data_dir,
    hold_lock,
    queue_invite,
    require_initialised,
)
from ._run import ControlOptions, RunError, run_node

__all__ = ["main"]

DEBUG_ENV: Final = "RUMOR_DEBUG"  # set (to anything) for tracebacks with the error lines
DATA_DIR_ENV: Final = "RUMOR_DATA_DIR"  # the data dir when --data-dir is not given
NICK_WAIT: Final = 15.0  # seconds `rumor nick` waits for the rooms to show the new nick (a
# node opened by the command may write in a room only after its 10 s own-chain grace)
NOT_RUNNING: Final = 3  # `rumor status` when no node runs (as LSB init scripts say)
SIGPIPE_STATUS: Final = 128 + signal.SIGPIPE  # 141: what the shell shows for a SIGPIPE'd one
INTERNAL_ERROR: Final = 70  # EX_SOFTWARE (sysexits.h): a bug, not a user's mistake
# The longest message text an op holds: its body, [text, reply_to] in msgpack, is at most
# MAX_BODY_BYTES (crdt/_op.py); a text that long has a 3-byte header, the array and a nil
# reply one byte each.
MAX_MESSAGE_BYTES: Final = MAX_BODY_BYTES - (len(msgpack.packb([" " * 256, None])) - 256)
LOCK_WAIT: Final = 30.0  # seconds a command waits for one other process to free the data dir
LOCK_POLL: Final = 0.05
# What the UI's node uses in a data dir without config.toml (tui/_run.py).
UI_DEFAULTS: Final = Config(listen="127.0.0.1:0", dht_port=0)


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
    parser.add_argument("--version", action="version", version=f"rumor {_version()}")
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


def _version() -> str:
    """The installed package's version: pyproject.toml is its one source."""
    try:
        return importlib.metadata.version("rumor")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown"


class CommandError(Exception):
    """A command that cannot be done as asked; the message is one line for people."""


# Errors that are the user's to fix (arguments, files, the data dir): one line, status 1.
_USER_ERRORS = (
    CommandError,
    ClientError,
    ConfigError,
    DataDirError,
    InviteError,
    IdentityError,
    RunError,
    StoreError,
    OSError,
)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    at = _swarm_at(argv)
    args = _parser().parse_args(argv if at is None else argv[:at])
    debug = args.debug or bool(os.environ.get(DEBUG_ENV))
    try:
        try:
            if at is not None:
                from ..swarm import main as swarm_main  # it parses its own options

                return swarm_main(argv[at + 1 :])
            status = _dispatch(args)
            sys.stdout.flush()  # here, where a closed pipe can still be told apart
            return status
        except BaseExceptionGroup as group:
            raise lone_error(group) from None
    except BrokenPipeError:
        return _stdout_closed()
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


def _stdout_closed() -> int:
    """Whoever read our output stopped (`rumor status | head -1`): end quietly, with the
    status of a process SIGPIPE ended, as other shell tools do."""
    # Whatever is still buffered must not fail again when Python flushes at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return SIGPIPE_STATUS


def _swarm_at(argv: list[str]) -> int | None:
    """Where the `swarm` command is in `argv`, if it is the command (after top-level
    options only)."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] == "--data-dir" else 1
    return i if i < len(argv) and argv[i] == "swarm" else None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _data_dir(args: argparse.Namespace) -> Path:
    if args.data_dir is not None:
        return Path(args.data_dir)
    from_env = os.environ.get(DATA_DIR_ENV)
    return Path(from_env) if from_env else default_data_dir()


def _check_text(args: argparse.Namespace) -> None:
    """CommandError for an argument that is not UTF-8 text: Python hands undecodable argv
    bytes over as lone surrogates, which nothing can encode (not the node, not a frame)."""
    for name, value in vars(args).items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and not _is_utf8(text):
                shown = name.replace("_", "-").upper()
                raise CommandError(f"{shown} is not UTF-8 text: {text!r}")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _dispatch(args: argparse.Namespace) -> int:
    _check_text(args)
    if args.command == "demo":
        return _demo_command(args)
    data_dir = _data_dir(args)
    if args.command is None:
        return _default(data_dir)
    if args.command == "init":
        return _init(data_dir, args)
    if args.command == "attach":
        return _attach(data_dir, args.address, args.token_file)
    if args.command == "run":
        require_initialised(data_dir)
        config = load_config(data_dir / CONFIG_FILE)
        control = ControlOptions(
            address=None
            if args.control == "off"
            else parse_control_address(args.control)
            if args.control
            else ControlOptions().address,
            allow_remote=args.control_allow_remote,
        )
        if args.control_allow_remote and control.address is None:
            raise CommandError("--control-allow-remote needs a --control address")
        return _run(data_dir, config.override(**_node_options(args)), control, args.log_format)
    config = _shell_config(data_dir)
    if args.command == "create":
        _require_name(args.name, "a room name")
        check_room_name(args.name)  # one line before anything is stored
        room = Invite(secrets.token_bytes(32), secrets.token_bytes(32), args.name)
        return _deliver(data_dir, config, room, announce=True)
    if args.command == "join":
        return _deliver(data_dir, config, parse_invite(args.invite), announce=False)
    return trio.run(_shell, data_dir, config, args)


def _shell_config(data_dir: Path) -> Config:
    """The settings the shell commands go by: config.toml's, or, in a data dir the UI made
    (an identity, no config.toml), the node options the UI uses then (`Node.open`'s
    defaults: loopback links on any free port, so invites made offline carry no address)."""
    if not DataDir(data_dir).identity.exists():
        require_initialised(data_dir)  # (raises: no identity, not a data dir)
    path = data_dir / CONFIG_FILE
    if path.exists():
        return load_config(path)
    return UI_DEFAULTS


def _require_name(text: str, what: str) -> None:
    if not text.strip():
        raise CommandError(f"{what} cannot be empty or blank")


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
    ensure_token(data_dir)  # for control clients of the node `rumor run` will run
    print(identity.peer_id_text)
    print(f"rumor: initialised {data_dir}; settings in {config_path}", file=sys.stderr)
    return 0


def _run(data_dir: Path, config: Config, control: ControlOptions, log_format: str) -> int:
    _configure_logging(log_format)
    with hold_lock(data_dir) as lock:
        return trio.run(run_node, data_dir, config, lock, control)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"level": record.levelname.lower(), "logger": record.name}
        entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _JournalFormatter(logging.Formatter):
    """Plain lines with the syslog priority prefix journald reads (`<4>` for a warning):
    `journalctl -p warning` then finds them."""

    PRIORITIES: Final = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return f"<{self.PRIORITIES.get(record.levelname, 6)}>{line}"


def _configure_logging(log_format: str) -> None:
    """One line per event on stderr: timestamped on a terminal, plain (the journal or the
    container runtime stamps them) otherwise, or JSON."""
    if log_format == "auto":
        log_format = "text" if sys.stderr.isatty() else "plain"
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if log_format == "json":
        formatter = _JsonFormatter()
    elif log_format == "plain":
        plain = "%(levelname)s %(name)s: %(message)s"
        # Under systemd, stderr is the journal's stream: it names itself in JOURNAL_STREAM.
        formatter = (
            _JournalFormatter(plain)
            if os.environ.get("JOURNAL_STREAM")
            else logging.Formatter(plain)
        )
    else:
        formatter = logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S"
        )
    handler.setFormatter(formatter)
    logging.basicConfig(level=logging.INFO, handlers=[handler])


# -- the terminal UI: attach to a running node, or open the data dir -----------------------


def _default(data_dir: Path) -> int:
    """`rumor` alone: the UI, attached to the data dir's node if one runs."""
    if _running(data_dir):
        return _attach(data_dir, None, None)
    return _open_ui(data_dir)


def _running(data_dir: Path) -> bool:
    if not data_dir.is_dir():
        return False
    try:
        with hold_lock(data_dir):
            return False
    except LockHeld:
        return True


def _open_ui(data_dir: Path) -> int:
    """The one place the UI is opened on a data dir of its own (no node running there)."""
    run = _tui_hook("run")
    if run is None:
        _parser().print_help()
        return 0
    result: int = run(data_dir)
    return result


def _tui_hook(name: str) -> Callable[..., Any] | None:
    """`tui.<name>`, imported only now (the UI is heavy), or None if this build lacks it."""
    try:
        tui = importlib.import_module("tui")
    except ImportError:
        return None
    hook = getattr(tui, name, None)
    return hook if callable(hook) else None


def _attach(data_dir: Path, address: str | None, token_file: Path | None) -> int:
    """The UI against the node at `address` (default: the data dir's running node)."""
    target: str | Path = address if address is not None else data_dir
    token: str | None = None
    if token_file is not None or address is not None:
        path = token_file if token_file is not None else data_dir / "control.token"
        try:
            token = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read the control token {path}: {exc}") from None
    elif not _running(data_dir):
        raise CommandError(f"no node is running on {data_dir} (start one: rumor run)")
    run_remote = _tui_hook("run_remote")
    if run_remote is None:
        raise CommandError("this build of rumor has no terminal UI to attach (tui.run_remote)")
    # Connected once first, so a wrong address or token is one line, not a UI that fails.
    trio.run(_check_connection, target, token)
    result: int = run_remote(functools.partial(RemoteClient.connect, target, token=token))
    return result


async def _check_connection(target: str | Path, token: str | None) -> None:
    async with RemoteClient.connect(target, token=token) as client:
        await client.me()


# -- chat from the shell ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def _open_client(data_dir: Path) -> AsyncIterator[tuple[ChatClient, bool]]:
    """A client of the data dir's node: the running one's control API (True), or, when
    none runs, the node opened here without links or DHT (False): what is written then
    goes out when the node runs next. Another command holding the data dir is waited for
    (at most LOCK_WAIT seconds)."""
    async with contextlib.AsyncExitStack() as stack:
        wait = _LockWait(data_dir, trio.current_time)
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


class _LockWait:
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


async def _shell(data_dir: Path, config: Config, args: argparse.Namespace) -> int:
    command: str = args.command
    text = ""
    if command == "send":
        text = _read_stdin() if args.text == "-" else args.text
        if not text.strip():
            raise CommandError("an empty message is not sent")
        _check_size(text, MAX_MESSAGE_BYTES, "a message")
    if command == "nick":
        _require_name(args.name, "a nick")
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


def _deliver(data_dir: Path, config: Config, invite: Invite, *, announce: bool) -> int:
    """Store the room of `invite` (through the running node, if there is one); print the
    invite for others if `announce`, else what happened."""
    with contextlib.ExitStack() as stack:
        running = _hold_lock_or_node(stack, data_dir)
        if running is None:
            try:
                trio.run(_store_room, data_dir, invite, announce)
            except BaseException:
                if announce:
                    # Nobody has its invite: a half-made new room is nobody's history.
                    DataDir(data_dir).discard_new_room(invite.room)
                raise
        else:
            queue_invite(data_dir, invite.to_uri(), new_room=announce)
    if announce:
        # The running node's address if it told us, else the configured one.
        address = running.address if running and running.address else config.invite_address
        peers = (address,) if address else ()
        print(Invite(invite.room, invite.secret, invite.name, peers).to_uri())
        if running is not None:
            problem = reachability_problem(None, running.address or None)
        else:
            problem = reachability_problem(config.listen, config.advertise or None)
        if problem:
            print(f"rumor: warning: {problem}", file=sys.stderr)
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


def _hold_lock_or_node(stack: contextlib.ExitStack, data_dir: Path) -> Holder | None:
    """Hold the data dir's lock in `stack` (None), or the holder if it is a running node
    (`rumor run` names its node's address in the lock once started). Another command
    holding it is waited for, at most LOCK_WAIT seconds."""
    wait = _LockWait(data_dir, time.monotonic)
    while True:
        try:
            stack.enter_context(hold_lock(data_dir))
        except LockHeld as held:
            if held.holder.address:
                return held.holder
            wait.check(held.holder)
            time.sleep(LOCK_POLL)
            continue
        return None


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


def _demo_command(args: argparse.Namespace) -> int:
    """`rumor demo`: the swarm in a temp dir (removed on exit) or in --data-dir."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(_exit_on_hangup())
        if args.data_dir is not None:
            root = Path(args.data_dir)
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rumor-demo-")))
        if args.headless:
            return trio.run(functools.partial(run_headless, root, print_line=_print_flush))
        run_demo = _tui_hook("run_demo")
        if run_demo is None:
            raise CommandError("this build of rumor has no terminal UI; try rumor demo --headless")
        result: int = run_demo(functools.partial(open_demo_client, root))
        return result
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _exit_on_hangup() -> Iterator[None]:
    """SIGTERM and SIGHUP (a closed terminal) end the command as Ctrl+C does, so what it
    opened is cleaned up (the demo's temporary data dirs) instead of left behind."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_flush(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
