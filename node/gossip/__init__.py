"""Gossip and sync for one room: Plumtree dissemination and version-vector catch-up.

Sans-IO: `RoomGossip` takes link events, received bytes, ingest results and `now`, and
returns actions (`Send`, `Ingest`, `Penalise`); the trio driver performs them. The wire
format lives in `_wire.py`. Nothing here touches a socket, a clock or the store.

The driver's side, per room (`core = RoomGossip(history.replica, rng=random.Random(seed),
peer_id=our_peer_id)`; the peer id settles crossed grafts, `_trees.py`):

- link authorised for the room opens / closes: `core.peer_up(peer, now)` / `peer_down`;
- a link message for the room arrives: `core.receive(peer, payload, now)`;
- `History.author(...)` returned an op: `core.authored(op, now)`;
- `Ingest(peer, token, ops)`: `report = await history.ingest(ops)`, then
  `core.ingested(token, report, now)` (ingests may overlap; report each one);
- `Send(peer, data)`: send `(room_id, data)` on that peer's link;
- `Penalise(peer, fault, detail)`: count it, log once per peer and fault, close the link
  (the core has already forgotten the peer);
- call `core.handle_timer(now)` at `core.next_timer()`, re-read after every call.

Every call returns the actions to perform, in order.
"""

from ._actions import Action, Fault, Ingest, Penalise, Send
from ._config import PEER_FAULT_REASONS, GossipConfig, GossipStats, OpSource
from ._errors import GossipError, GossipLocalError, GossipRemoteError
from ._room import RoomGossip
from ._wire import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Ack,
    Hello,
    IHave,
    Message,
    Mode,
    MsgType,
    Ops,
    Pause,
    Prune,
    Vector,
    Want,
    decode_message,
    encode_message,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "PEER_FAULT_REASONS",
    "PROTOCOL_VERSION",
    "Ack",
    "Action",
    "Fault",
    "GossipConfig",
    "GossipError",
    "GossipLocalError",
    "GossipRemoteError",
    "GossipStats",
    "Hello",
    "IHave",
    "Ingest",
    "Message",
    "Mode",
    "MsgType",
    "OpSource",
    "Ops",
    "Pause",
    "Penalise",
    "Prune",
    "RoomGossip",
    "Send",
    "Vector",
    "Want",
    "decode_message",
    "encode_message",
]
