"""The chat client: the one narrow interface the terminal UI and the shell commands use.

`ChatClient` is what they may ask of a node: rooms, writing, pages of history, members,
events and status, in plain frozen dataclasses that cross a process boundary unchanged.
`LocalClient` provides it over an in-process `Node`; the control API's remote client
provides the same over a `rumor run` daemon, so a UI cannot tell which it has.

Nothing here decides anything about the network or the history; it only translates.
"""

from ._api import (
    ChatClient,
    ClientError,
    ClientEvent,
    HistoryPage,
    Me,
    MemberInfo,
    PeerDiagnostics,
    RoomChanged,
    RoomDiagnostics,
    RoomInfo,
    RoomsChanged,
)
from ._local import LocalClient

__all__ = [
    "ChatClient",
    "ClientError",
    "ClientEvent",
    "HistoryPage",
    "LocalClient",
    "Me",
    "MemberInfo",
    "PeerDiagnostics",
    "RoomChanged",
    "RoomDiagnostics",
    "RoomInfo",
    "RoomsChanged",
]
