"""The public surface of node.gossip: what `__all__` promises exists, and nothing leaks."""

from __future__ import annotations

import node.gossip

EXPECTED = {
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
}


def test_public_surface() -> None:
    assert set(node.gossip.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(node.gossip, name) is not None
    public = {n for n in vars(node.gossip) if not n.startswith("_")}
    assert public - EXPECTED == set()  # private modules are not exported by name


def test_remote_and_local_errors_are_distinct() -> None:
    assert not issubclass(node.gossip.GossipRemoteError, node.gossip.GossipLocalError)
    assert not issubclass(node.gossip.GossipLocalError, node.gossip.GossipRemoteError)
