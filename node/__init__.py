"""The peer: identity, links, gossip and sync, the Node API and the command line.

Embedders use `Node` (``async with Node.open(data_dir) as node``) and the `Room` handles
it returns; everything else lives in the subpackages (`node.link`, `node.gossip`,
`node.noise`).
"""

from ._invite import Invite, InviteError, parse_invite
from ._node import Node, NodeStatus, RoomStatus, room_dht_key
from ._room import Room, RoomEvents

__all__ = [
    "Invite",
    "InviteError",
    "Node",
    "NodeStatus",
    "Room",
    "RoomEvents",
    "RoomStatus",
    "parse_invite",
    "room_dht_key",
]
