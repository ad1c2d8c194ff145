"""Gossip and sync for one room: Plumtree dissemination and version-vector catch-up.

Sans-IO: `RoomGossip` takes link events, received bytes, ingest results and `now`, and
returns actions (`Send`, `Ingest`, `Penalise`); the trio driver performs them. The wire
format lives in `_wire.py`. Nothing here touches a socket, a clock or the store.
"""

from ._actions import Action, Fault, Ingest, Penalise, Send
from ._errors import GossipError, GossipLocalError, GossipRemoteError
from ._room import PEER_FAULT_REASONS, GossipConfig, GossipStats, OpSource, RoomGossip
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
