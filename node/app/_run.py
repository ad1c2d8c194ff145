"""`rumor run`: a long-running node with operator logs, an inbox for new rooms, metrics.

The node runs until SIGINT, SIGTERM or SIGHUP; then `Node.open`'s block exits, which
closes the links with their closing handshakes and every room's history (ops we author
are durable before anyone sees them; received ones are committed in batches), so a clean
stop loses nothing. A stop that takes over `SHUTDOWN_GRACE` seconds is ended by a
watchdog with exit status 1, a safety net for shutdowns that hang.

Rooms created or joined by other processes (`rumor create`, `rumor join`) arrive as
invites in the data dir's inbox (`node._datadir`): the node looks every `INBOX_POLL`
seconds, and removes each entry once its room is stored. An entry it cannot read or join
(a damaged invite, a directory, a room whose file is damaged) is logged once and renamed
`<name>.failed` in the inbox: kept for the operator (rename it back to retry), never
retried on its own, and the node keeps serving.

SIGHUP stops the node like SIGINT and SIGTERM: a closed terminal or tmux session must not
leave a node running unseen (and a reload signal would have nothing to reload).

Operator logs go to stderr, one line per event: started, room joined, link up or down,
DHT reachable or not, a room caught up, shutting down. Links and DHT contacts are seen by
comparing `Node.status()` snapshots (`Watcher`), since the Node offers no event stream for
them. This module only drives a `Node` through its public API; it never decides anything
about gossip or storage.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import signal
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import trio
from prometheus_client import CollectorRegistry

from crdt import StoreError
from rumor_runtime import lone_error

from .._addresses import join_host_port, short_peer_id, split_host_port
from .._invite import InviteError, parse_invite
from .._node import Node
from .._room import Room
from .._status import NodeStatus
from ._config import Config
from ._inbox import NEW_ROOM_MARK, Lock, pending_invites, read_invite, set_aside
from ._metrics import NodeCollector, serve_metrics

__all__ = ["RunError", "Watcher", "run_node"]

log = logging.getLogger("rumor")

INBOX_POLL: Final = 1.0  # seconds between looks at the inbox
WATCH_INTERVAL: Final = 0.25  # seconds between status snapshots compared for the log
CAUGHT_UP_EVERY: Final = 10.0  # at most one "caught up" line per room this often
SHUTDOWN_GRACE: Final = 10.0  # seconds a stop may take (links close in 2 s, workers in 5 s)


class Watcher:
    """Turns successive `NodeStatus` snapshots into log lines (pure: no clock, no IO).

    It starts from nothing (no links, no DHT contacts, nothing received), so links and
    contacts made before the first snapshot are logged too."""

    def __init__(self) -> None:
        self._links: tuple[bytes, ...] = ()
        self._contacts = 0
        self._logged_received: dict[bytes, int] = {}  # per room, as of the last line
        self._logged_at: dict[bytes, float] = {}

    def update(self, status: NodeStatus, now: float) -> list[str]:
        lines: list[str] = []
        for peer in status.links:
            if peer not in self._links:
                lines.append(f"link up: peer {short_peer_id(peer)}")
        for peer in self._links:
            if peer not in status.links:
                lines.append(f"link down: peer {short_peer_id(peer)}")
        contacts = status.dht_contacts or 0
        if contacts and not self._contacts:
            lines.append(f"DHT reachable: {contacts} contacts")
        elif self._contacts and not contacts:
            lines.append("DHT unreachable: no contacts left")
        for room in status.rooms:
            # A line when ops came from peers and all is in effect, at most once a while.
            logged = self._logged_received.get(room.room_id, 0)
            due = now >= self._logged_at.get(room.room_id, -math.inf) + CAUGHT_UP_EVERY
            if room.synced and room.received > logged and due:
                lines.append(
                    f"room {room.room_id.hex()[:8]} caught up: {room.ops} ops "
                    f"({room.received - logged} more received) from {room.authors} authors, "
                    f"{len(room.peers)} peers"
                )
                self._logged_received[room.room_id] = room.received
                self._logged_at[room.room_id] = now
        self._links, self._contacts = status.links, contacts
        return lines


async def _watch(node: Node) -> None:
    watcher = Watcher()
    while True:
        for line in watcher.update(node.status(), trio.current_time()):
            log.info("%s", line)
        await trio.sleep(WATCH_INTERVAL)


def _log_joined(room: Room) -> None:
    messages = len(room.timeline())
    log.info("room joined: %s %r (%d messages)", room.id.hex()[:8], room.name, messages)


async def _join_pending(node: Node, data_dir: Path, skipped: set[Path]) -> None:
    """Join every invite waiting in the inbox; each file goes once its room is stored.

    An entry that cannot be read or joined is set aside as `<name>.failed`, with one
    warning; one that cannot even be renamed (or removed once joined) is added to
    `skipped` and left alone until the node restarts. OSError if the inbox cannot be
    listed."""
    for path in await trio.to_thread.run_sync(pending_invites, data_dir):
        if path in skipped:
            continue
        try:
            text = await trio.to_thread.run_sync(read_invite, path)
        except FileNotFoundError:
            continue  # taken away meanwhile
        except OSError as exc:
            await _set_aside(path, f"cannot read it ({exc.strerror or exc})", skipped)
            continue
        except UnicodeDecodeError as exc:
            await _set_aside(path, f"unusable invite (not UTF-8: {exc.reason})", skipped)
            continue
        try:
            room = await _join(node, text, new_room=path.stem.endswith(NEW_ROOM_MARK))
        except InviteError as exc:
            await _set_aside(path, f"unusable invite ({_one_line(exc)})", skipped)
            continue
        except (StoreError, ValueError) as exc:
            await _set_aside(path, f"cannot join its room ({_one_line(exc)})", skipped)
            continue
        except OSError as exc:
            await _set_aside(path, f"cannot join its room ({exc.strerror or exc})", skipped)
            continue
        _log_joined(room)
        # Removed only after `join` stored the room: a crash in between joins it again,
        # which is harmless.
        try:
            await trio.to_thread.run_sync(functools.partial(path.unlink, missing_ok=True))
        except OSError as exc:
            skipped.add(path)
            log.warning(
                "inbox %s: joined, but cannot remove it (%s); skipped until restart",
                path.name,
                exc.strerror or exc,
            )


async def _join(node: Node, text: str, *, new_room: bool) -> Room:
    """`node.join(text)` (or for a `new_room`, `create_room` with the invite's id and
    secret), its lone error unwrapped from trio's exception groups (a room file that
    cannot be opened fails in the task that opens it)."""
    try:
        if new_room:
            invite = parse_invite(text)
            return await node.create_room(invite.name, room_id=invite.room, secret=invite.secret)
        return await node.join(text)
    except BaseExceptionGroup as group:
        lone = lone_error(group)
        if lone is group:
            raise
        raise lone from None


async def _set_aside(path: Path, problem: str, skipped: set[Path]) -> None:
    try:
        kept = await trio.to_thread.run_sync(set_aside, path)
    except FileNotFoundError:
        return
    except OSError as exc:
        skipped.add(path)
        log.warning(
            "inbox %s: %s; cannot set it aside (%s), skipped until restart",
            path.name,
            problem,
            exc.strerror or exc,
        )
        return
    log.warning(
        "inbox %s: %s; kept as %s (rename it back to %s to retry)",
        path.name,
        problem,
        kept.name,
        path.name,
    )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


async def _inbox_loop(node: Node, data_dir: Path) -> None:
    skipped: set[Path] = set()
    unlistable = ""  # the last error listing the inbox, logged once until it changes
    while True:
        try:
            await _join_pending(node, data_dir, skipped)
        except OSError as exc:  # the inbox itself cannot be listed
            if str(exc) != unlistable:
                log.warning("inbox: cannot look for invites (%s)", exc.strerror or exc)
            unlistable = str(exc)
        else:
            unlistable = ""
        await trio.sleep(INBOX_POLL)


class _Watchdog:
    """Ends the process if a shutdown does not finish within `grace` seconds.

    A safety net: closing waits in shielded scopes (a history saving its last batch), and
    a bug there must not leave an operator's node hanging. Ops that were committed are
    safe in SQLite's WAL; what was received but not yet committed is fetched from peers
    again. A thread, because the waits it guards are shielded from trio's cancellation."""

    def __init__(self, grace: float) -> None:
        self._timer = threading.Timer(grace, self._give_up, args=(grace,))
        self._timer.daemon = True

    def arm(self) -> None:
        self._timer.start()

    def disarm(self) -> None:
        self._timer.cancel()

    @staticmethod
    def _give_up(grace: float) -> None:
        log.error(
            "shutdown did not finish within %g s; exiting anyway (ops received but not "
            "yet stored will be fetched from peers again)",
            grace,
        )
        logging.shutdown()
        os._exit(1)


class RunError(Exception):
    """The node cannot start as configured; the message is one line for people."""


async def run_node(data_dir: Path, config: Config, lock: Lock) -> int:
    """Run the node in `data_dir` until SIGINT, SIGTERM or SIGHUP; 0 after a clean stop."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        listeners: list[trio.SocketListener] = []
        if config.metrics:
            host, port = split_host_port(config.metrics)
            try:
                listeners = await trio.open_tcp_listeners(port, host=host)
            except OSError as exc:
                raise RunError(
                    f"cannot serve metrics on {config.metrics}: {exc.strerror or exc}"
                ) from None
        watchdog = _Watchdog(SHUTDOWN_GRACE)
        async with contextlib.AsyncExitStack() as stack:
            try:
                node = await stack.enter_async_context(
                    Node.open(
                        data_dir,
                        listen=config.listen,
                        advertise=config.advertise or None,
                        dht_port=config.dht_port,
                        dht_host=config.dht_host,
                        bootstrap=list(config.bootstrap),
                        verify_workers=config.verify_workers,
                    )
                )
            except OSError as exc:
                raise RunError(
                    f"cannot start the node (links on {config.listen}, DHT on UDP port "
                    f"{config.dht_port}): {exc.strerror or exc}"
                ) from None
            except ValueError as exc:
                # The node's word for stored data it cannot use (settings.json, say).
                raise RunError(f"cannot start the node on {data_dir}: {exc}") from None
            lock.announce(node.address)
            await _serve(node, data_dir, listeners, signals)
            watchdog.arm()  # from here on, the node closes
        watchdog.disarm()
        log.info("stopped")
    return 0


async def _serve(
    node: Node,
    data_dir: Path,
    listeners: list[trio.SocketListener],
    signals: AsyncIterator[int],
) -> None:
    """Log the start, serve metrics, watch the inbox, until SIGINT or SIGTERM."""
    dht = "off"
    if node.dht:
        dht_host, dht_port = node.dht.address[:2]
        dht = join_host_port(dht_host, dht_port)
    log.info(
        "started: peer %s, links on %s, DHT on %s, %d rooms",
        node.peer_id_text,
        node.address,
        dht,
        len(node.rooms()),
    )
    for room in node.rooms():
        _log_joined(room)
    async with trio.open_nursery() as nursery:
        if listeners:
            registry = CollectorRegistry(auto_describe=True)
            registry.register(NodeCollector(node.status))
            nursery.start_soon(serve_metrics, registry, listeners)
            host, port = listeners[0].socket.getsockname()[:2]
            log.info("metrics on http://%s/metrics", join_host_port(host, port))
        nursery.start_soon(_inbox_loop, node, data_dir)
        nursery.start_soon(_watch, node)
        async for signum in signals:
            log.info("shutting down (%s)", signal.Signals(signum).name)
            nursery.cancel_scope.cancel()
            break
