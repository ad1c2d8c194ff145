"""The peer: identity, links, gossip and sync, the Node API and the command line.

Embedders use `Node` (``async with Node.open(data_dir) as node``) and the `Room` handles
it returns; testers run nodes in virtual time on a `SimNetwork`
(``Node.open(data_dir, network=sim)``); everything else lives in the subpackages
(`node.link`, `node.gossip`, `node.noise`).
"""

from ._events import RoomEvents
from ._invite import Invite, InviteError, parse_invite
from ._lock import DataDirError
from ._node import Node, room_dht_key
from ._room import Room
from ._status import NodeStatus, RoomStatus
from .sim import SimNetwork

__all__ = [
    "DataDirError",
    "Invite",
    "InviteError",
    "Node",
    "NodeStatus",
    "Room",
    "RoomEvents",
    "RoomStatus",
    "SimNetwork",
    "parse_invite",
    "room_dht_key",
]
