"""The peer: the library embedders import, and the operator's application beside it.

Embedders use `Node` (``async with Node.open(data_dir) as node``) and the `Room` handles
it returns; testers run nodes in virtual time on a `SimNetwork`
(``Node.open(data_dir, network=sim)``). What lives where:

- the library: `Node`, `Room` and the modules beside them (the room driver, the peering
  core and its driver, discovery, the environment, the data dir's layout), and the
  subpackages `node.noise`, `node.link`, `node.gossip` (protocol cores, sans-IO) and
  `node.client` (the chat interface the UI and shell use);
- `node.sim`: the simulated network, for tests, benchmarks and swarms;
- `node.app`: the `rumor` command, `rumor run`, its config, inbox and metrics.

The library never imports `node.app`, and nothing outside `node.sim` may branch on being
simulated: a node gets its transports, clock, randomness and blocking runner as an
`Environment`. Protocol decisions belong to the pure cores, never to a driver.
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
