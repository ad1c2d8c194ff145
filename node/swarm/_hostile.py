"""A hostile member: someone who holds the room's secret and misbehaves in it.

`Hostile` dials chosen nodes of a swarm over the simulated network as a member with its
own (seeded) identity, proves the secret, and then sends one of three things:

- garbage: bytes that are no gossip message at all;
- a forged op: a message whose signature was tampered with;
- an equivocating chain: two different ops at seq 1 of its chain, one to each of two
  nodes, so that the room sees the author forked.

Every attack is recorded (whom, what, and whether the node closed the link) so a scenario
can check its expectation: the member is cut off, nothing forged is stored, and every node
sees the forked author alike.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

import trio

from crdt import Identity, Kind, Replica

from ..gossip import PROTOCOL_VERSION, Hello, Mode, Ops, encode_message
from ..link import LinkError, connect_link
from ._swarm import Swarm, SwarmNode

__all__ = ["ATTACKS", "Hostile"]

ATTACKS: Final = ("garbage", "forged", "equivocate")
LIMIT: Final = 64 * 1024  # the receive limit the hostile member claims in its HELLO
WAIT: Final = 30.0  # virtual seconds an attacked node gets to close the link
FORGED_TEXT: Final = "forged by a hostile member"


@dataclass
class Hostile:
    """One hostile member of a swarm's room (see the module docstring)."""

    swarm: Swarm
    identity: Identity = field(init=False)
    attacks: list[dict[str, object]] = field(default_factory=list)
    twins: list[bytes] = field(default_factory=list)  # ids of the equivocating ops

    def __post_init__(self) -> None:
        seed = hashlib.blake2b(f"{self.swarm.seed}:hostile".encode(), digest_size=32).digest()
        self.identity = Identity.from_seed(seed)
        self._host = self.swarm.network.new_host()

    @property
    def peer_id(self) -> bytes:
        return self.identity.peer_id

    def _now_ms(self) -> int:
        return self.swarm.network.epoch_ms + int(trio.current_time() * 1000)

    async def attack(self, target: SwarmNode, kind: str) -> bool:
        """Send `kind` (one of `ATTACKS` but equivocate) to `target`; True if the node cut
        the link within `WAIT` seconds."""
        invite = self.swarm.invite
        assert invite is not None
        if kind == "garbage":
            payload = b"\xc1 is no msgpack at all"
        elif kind == "forged":
            op = Replica(invite.room, identity=self.identity).create(
                Kind.MESSAGE, (FORGED_TEXT, None), now_ms=self._now_ms()
            )
            tampered = op.data[:-1] + bytes([op.data[-1] ^ 1])
            payload = encode_message(Ops(0, Mode.PUSH, (tampered,)))
        else:
            raise ValueError(f"unknown attack {kind!r}")
        cut = await self._send(target, payload)
        self._record(target, kind, cut)
        return cut

    async def equivocate(self, first: SwarmNode, second: SwarmNode) -> None:
        """Sign two different messages at seq 1 and tell `first` one, `second` the other."""
        invite = self.swarm.invite
        assert invite is not None
        now = self._now_ms()
        twins = [
            Replica(invite.room, identity=self.identity).create(
                Kind.MESSAGE, (text, None), now_ms=now
            )
            for text in ("twin told to one", "twin told to another")
        ]
        self.twins = [t.id for t in twins]
        for target, twin in ((first, twins[0]), (second, twins[1])):
            await self._send(target, encode_message(Ops(0, Mode.PUSH, (twin.data,))), linger=1.0)
            self._record(target, "equivocate", None)

    def _record(self, target: SwarmNode, kind: str, cut: bool | None) -> None:
        now = round(trio.current_time(), 3)
        self.attacks.append({"at": now, "target": target.name, "attack": kind, "cut_off": cut})
        self.swarm.recorder.note(trio.current_time(), f"hostile: {kind} to {target.name}")

    async def _send(self, target: SwarmNode, payload: bytes, *, linger: float = WAIT) -> bool:
        """Join the room on a link to `target`, send HELLO and `payload`, then read until
        the node closes the link (True) or `linger` seconds pass (False)."""
        invite = self.swarm.invite
        assert invite is not None
        transport = self.swarm.network.transport(self._host)
        try:
            async with connect_link(
                f"ws://{target.address}/", self.identity, transport=transport
            ) as link:
                if not await link.join_room(invite.room, invite.secret):
                    return False
                await link.send(invite.room, encode_message(Hello(PROTOCOL_VERSION, 4, LIMIT)))
                await link.send(invite.room, payload)
                with trio.move_on_after(linger):
                    async for _ in link:
                        pass
                return link.closed is not None and link.closed.reason in ("peer", "transport")
        except LinkError:
            return True  # closed on us while sending: cut off
