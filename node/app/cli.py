"""The `rumor` command line.

    rumor              the terminal UI (attached to the data dir's node if one runs)
    rumor init         create the identity, config.toml and control token in the data dir
    rumor run          a long-running headless node (`node.app._run`) with its control API
    rumor attach       the terminal UI against a running node
    rumor create/join  create a room and print its invite / store the room an invite names
    rumor rooms, send, history, tail, invite, nick, status, leave
                       chat from the shell (`_shell.py`): through the running node's
                       control API, or, when none runs, by opening the data dir (the
                       same `ChatClient` code)
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
import secrets
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import trio

from crdt import (
    Identity,
    IdentityError,
    StoreError,
)
from rumor_runtime import lone_error

from .._datadir import DataDir
from .._invite import Invite, InviteError, check_room_name, parse_invite, reachability_problem
from .._node import Node
from ..client import ClientError
from ..client._remote import (
    RemoteClient,
    parse_control_address,
)
from ._args import DATA_DIR_ENV, DEBUG_ENV, build_parser
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
from ._shell import LOCK_POLL, CommandError, LockWait, require_name, shell_command

__all__ = ["main"]

SIGPIPE_STATUS: Final = 128 + signal.SIGPIPE  # 141: what the shell shows for a SIGPIPE'd one
INTERNAL_ERROR: Final = 70  # EX_SOFTWARE (sysexits.h): a bug, not a user's mistake
# What the UI's node uses in a data dir without config.toml (tui/_run.py).
UI_DEFAULTS: Final = Config(listen="127.0.0.1:0", dht_port=0)


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
    args = build_parser().parse_args(argv if at is None else argv[:at])
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
        require_name(args.name, "a room name")
        check_room_name(args.name)  # one line before anything is stored
        room = Invite(secrets.token_bytes(32), secrets.token_bytes(32), args.name)
        return _deliver(data_dir, config, room, announce=True)
    if args.command == "join":
        return _deliver(data_dir, config, parse_invite(args.invite), announce=False)
    return trio.run(shell_command, data_dir, config, args)


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
        build_parser().print_help()
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
    wait = LockWait(data_dir, time.monotonic)
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
