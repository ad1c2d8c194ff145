"""The sans-IO link core: one side of one peer link, from the first handshake byte to close.

Bytes, calls and ``now`` in; WebSocket messages to send, events and a timer out:

- :meth:`LinkSession.receive_message` takes one received WebSocket message (one Noise
  message) and returns events, or raises :class:`LinkRemoteError`, after which the session
  is closed;
- :meth:`LinkSession.messages_to_send` drains the messages to put on the wire, in order
  (their Noise nonces are already fixed, so the driver must send them in this order);
- :meth:`LinkSession.next_deadline` says when to call :meth:`LinkSession.handle_timer`,
  which sends keepalives and declares the handshake or the link timed out.

Handshake: ``Noise_XX_25519_ChaChaPoly_BLAKE2b`` with prologue :data:`PROLOGUE`; messages 2
and 3 carry the identity bindings of ``_auth``. Rooms: each side sends a
:class:`RoomProof` for every room it joins; a room is authorized on this side once the
peer's proof for it verifies, and only then may data of that room flow either way. A
:class:`Data` frame for a room the peer has not proven is a :class:`LinkRemoteError` (an
honest peer never sends one: it only sends after verifying our proof, which we only send
for rooms we hold, and a room once joined is never left on a link).

This module must never do IO, read the clock or sleep; the Noise core it drives draws
ephemeral keys from the OS CSPRNG, as Noise §4.1 GENERATE_KEYPAIR asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from crdt import Identity

from ..noise import HandshakeState, KeyPair, NoiseRemoteError, TransportState
from ._auth import (
    ROOM_SECRET_BYTES,
    check_room_proof,
    identity_payload,
    read_identity_payload,
    room_proof,
)
from ._errors import LinkLocalError, LinkRemoteError
from ._frames import (
    MAX_FRAME,
    ROOM_ID_BYTES,
    Data,
    Frame,
    Ping,
    RoomProof,
    RoomUnknown,
    decode_frame,
    encode_frame,
)

__all__ = [
    "MAX_MESSAGE",
    "PROLOGUE",
    "PROTOCOL",
    "Event",
    "HandshakeComplete",
    "LinkConfig",
    "LinkSession",
    "Message",
    "RoomAuthorized",
    "RoomDenied",
    "RoomRefused",
    "TimedOut",
]

PROTOCOL: Final = "Noise_XX_25519_ChaChaPoly_BLAKE2b"
PROLOGUE: Final = b"rumor link v1"
_TAG_LEN: Final = 16
MAX_MESSAGE: Final = 65535
"""Noise §3: every Noise message, hence every WebSocket message of a link, is ≤ 65535 bytes."""


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """Timing of a link, in seconds.

    ``keepalive``: send a ping after this long without sending anything.
    ``idle_timeout``: the link is dead after this long without receiving anything; it must
    exceed the peer's ``keepalive`` (the defaults leave room for two lost pings).
    ``handshake_timeout``: the whole handshake (and the WebSocket opening) must finish
    within this.
    ``send_budget``: bytes queued by ``Link.send_nowait`` and not yet written after which
    the peer counts as not reading, and the link closes (``slow``).
    """

    keepalive: float = 15.0
    idle_timeout: float = 45.0
    handshake_timeout: float = 10.0
    send_budget: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("keepalive", "idle_timeout", "handshake_timeout", "send_budget"):
            if not getattr(self, name) > 0:
                raise LinkLocalError(f"{name} must be positive")
        if self.keepalive >= self.idle_timeout:
            raise LinkLocalError("keepalive must be shorter than idle_timeout")


# -- events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """The handshake finished: ``peer_id`` is proven, ``handshake_hash`` is shared."""

    peer_id: bytes
    handshake_hash: bytes


@dataclass(frozen=True, slots=True)
class RoomAuthorized:
    """The peer proved it holds ``room_id``'s secret; the room's messages may now flow."""

    room_id: bytes


@dataclass(frozen=True, slots=True)
class RoomRefused:
    """The peer sent a wrong proof for ``room_id``; it is refused that room on this link."""

    room_id: bytes


@dataclass(frozen=True, slots=True)
class RoomDenied:
    """The peer answered our proof for ``room_id`` with "unknown room".

    It does not hold the room, or our proof did not verify; the answer does not say which.
    The room stays joined here: if the peer joins it later, its proof authorizes it.
    """

    room_id: bytes


@dataclass(frozen=True, slots=True)
class Message:
    """One application message the peer sent for an authorized room."""

    room_id: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The handshake did not finish in time, or nothing arrived for ``idle_timeout``."""

    phase: Literal["handshake", "idle"]


Event = HandshakeComplete | RoomAuthorized | RoomRefused | RoomDenied | Message | TimedOut


@dataclass(slots=True)
class _Room:
    secret: bytes
    proof_sent: bool = False
    peer_proven: bool = False
    refused: bool = False


@dataclass(slots=True)
class _Clock:
    started: float
    last_sent: float
    last_received: float
    receiving_paused: bool = False


# -- the session -----------------------------------------------------------------------


class LinkSession:
    """One side of one link. ``now`` is any monotonic clock in seconds (trio's in drivers).

    ``static`` is this side's Noise static key pair; by default a fresh one per link, so
    nothing but the signed binding ties a link to the node. ``expected_peer_id``, when the
    dialer knows whom it dials, makes any other proven peer a remote error.
    """

    def __init__(
        self,
        identity: Identity,
        *,
        initiator: bool,
        now: float,
        config: LinkConfig | None = None,
        static: KeyPair | None = None,
        expected_peer_id: bytes | None = None,
    ) -> None:
        if not isinstance(identity, Identity):
            raise LinkLocalError("identity must be a crdt.Identity")
        if expected_peer_id is not None and (
            not isinstance(expected_peer_id, bytes) or len(expected_peer_id) != 32
        ):
            raise LinkLocalError("expected_peer_id must be 32 bytes")
        self._identity = identity
        self._initiator = bool(initiator)
        self._config = config if config is not None else LinkConfig()
        self._static = static if static is not None else KeyPair.generate()
        self._expected = expected_peer_id
        self._hs: HandshakeState | None = HandshakeState(
            PROTOCOL, initiator=self._initiator, prologue=PROLOGUE, s=self._static
        )
        self._transport: TransportState | None = None
        self._peer_id: bytes | None = None
        self._handshake_hash: bytes | None = None
        self._closed = False
        self._outbox: list[bytes] = []
        self._rooms: dict[bytes, _Room] = {}
        self._clock = _Clock(started=now, last_sent=now, last_received=now)
        if self._initiator:
            # Noise XX message 1, "-> e": the payload is in clear and carries nothing.
            self._outbox.append(self._hs.write_message(b""))

    # -- introspection ----------------------------------------------------------------

    @property
    def initiator(self) -> bool:
        """Whether this side dialed (Noise initiator)."""
        return self._initiator

    @property
    def config(self) -> LinkConfig:
        """The timing this session runs with."""
        return self._config

    @property
    def is_established(self) -> bool:
        """Whether the handshake finished and the session is not closed."""
        return self._transport is not None and not self._closed

    @property
    def is_closed(self) -> bool:
        """Whether the session ended (closed, timed out or broken by the peer)."""
        return self._closed

    @property
    def peer_id(self) -> bytes:
        """The peer's proven Ed25519 public key; only once the handshake is complete."""
        if self._peer_id is None:
            raise LinkLocalError("the peer id is only known once the handshake is complete")
        return self._peer_id

    @property
    def handshake_hash(self) -> bytes:
        """The Noise handshake hash (Noise §11.2 channel binding), same on both sides."""
        if self._handshake_hash is None:
            raise LinkLocalError("the handshake hash is only final once the handshake is")
        return self._handshake_hash

    @property
    def pending_messages(self) -> int:
        """How many messages :meth:`messages_to_send` would return now."""
        return len(self._outbox)

    @property
    def rooms(self) -> frozenset[bytes]:
        """The rooms authorized on this link: joined here and proven by the peer."""
        return frozenset(r for r, state in self._rooms.items() if state.peer_proven)

    @property
    def refused_rooms(self) -> frozenset[bytes]:
        """Joined rooms for which the peer sent a wrong proof."""
        return frozenset(r for r, state in self._rooms.items() if state.refused)

    # -- calls from our side ----------------------------------------------------------

    def join_room(self, room_id: bytes, secret: bytes) -> None:
        """Offer ``room_id`` on this link: send our proof now, or when the handshake ends."""
        self._check_open()
        if not isinstance(room_id, bytes) or len(room_id) != ROOM_ID_BYTES:
            raise LinkLocalError(f"room_id must be {ROOM_ID_BYTES} bytes")
        if not isinstance(secret, bytes) or len(secret) != ROOM_SECRET_BYTES:
            raise LinkLocalError(f"a room secret is {ROOM_SECRET_BYTES} bytes")
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = _Room(secret)
        elif room.secret != secret:
            raise LinkLocalError("this room was joined on this link with another secret")
        if self._transport is not None:
            self._offer(room_id, room)

    def send(self, room_id: bytes, payload: bytes) -> None:
        """Queue ``payload`` (at most ``MAX_PAYLOAD`` bytes) for an authorized room."""
        self._check_open()
        if self._transport is None:
            raise LinkLocalError("nothing can be sent before the handshake is complete")
        room = self._rooms.get(room_id)
        if room is None or not room.peer_proven:
            # Sending before the peer proved the secret would leak the room to it.
            raise LinkLocalError("the room is not authorized on this link")
        self._queue(Data(room_id, payload))

    def close(self) -> None:
        """End the session; later calls are local errors, received bytes are ignored."""
        self._closed = True
        self._outbox.clear()

    def pause_receiving(self) -> None:
        """The driver stopped reading (backpressure); idle time stops counting."""
        self._clock.receiving_paused = True

    def resume_receiving(self, now: float) -> None:
        """The driver reads again; the idle timeout restarts from ``now``."""
        self._clock.receiving_paused = False
        self._clock.last_received = max(self._clock.last_received, now)

    # -- bytes and time ---------------------------------------------------------------

    def messages_to_send(self, now: float) -> list[bytes]:
        """The WebSocket messages to send, in order; each is one Noise message."""
        out, self._outbox = self._outbox, []
        if out:
            self._clock.last_sent = now
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None (closed)."""
        if self._closed:
            return None
        clock, config = self._clock, self._config
        if self._transport is None:
            return clock.started + config.handshake_timeout
        # A queued message is about to be sent: that resets the keepalive anyway.
        deadline = clock.last_sent + config.keepalive if not self._outbox else float("inf")
        if not clock.receiving_paused:
            deadline = min(deadline, clock.last_received + config.idle_timeout)
        return deadline

    def handle_timer(self, now: float) -> list[Event]:
        """Act on every deadline that has passed: time out, or queue a keepalive ping."""
        if self._closed:
            return []
        clock, config = self._clock, self._config
        if self._transport is None:
            if now >= clock.started + config.handshake_timeout:
                self.close()
                return [TimedOut("handshake")]
            return []
        if not clock.receiving_paused and now >= clock.last_received + config.idle_timeout:
            self.close()
            return [TimedOut("idle")]
        if not self._outbox and now >= clock.last_sent + config.keepalive:
            self._queue(Ping())
        return []

    def receive_message(self, message: bytes, now: float) -> list[Event]:
        """Events from one received WebSocket message; raises :class:`LinkRemoteError`.

        After a remote error the session is closed: the driver closes the link.
        """
        if self._closed:
            return []
        if not isinstance(message, bytes):
            raise LinkLocalError("message must be bytes")
        self._clock.last_received = now
        try:
            if self._transport is None:
                return self._receive_handshake(message)
            return self._receive_frame(message)
        except LinkRemoteError:
            self.close()
            raise

    # -- internals --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LinkLocalError("the link session is closed")

    def _encrypt(self, plaintext: bytes) -> None:
        assert self._transport is not None
        self._outbox.append(self._transport.encrypt(plaintext))

    def _queue(self, frame: Frame) -> None:
        self._encrypt(encode_frame(frame))

    def _offer(self, room_id: bytes, room: _Room) -> None:
        if room.proof_sent or room.refused:
            return
        room.proof_sent = True
        self._queue(
            RoomProof(
                room_id,
                room_proof(
                    room.secret,
                    initiator=self._initiator,
                    handshake_hash=self.handshake_hash,
                    room_id=room_id,
                ),
            )
        )

    def _receive_handshake(self, message: bytes) -> list[Event]:
        hs = self._hs
        assert hs is not None
        if len(message) > MAX_MESSAGE:
            raise LinkRemoteError("oversized", f"handshake message of {len(message)} bytes")
        try:
            payload = hs.read_message(message)
        except NoiseRemoteError as exc:
            raise LinkRemoteError("handshake", str(exc)) from exc
        if self._initiator:
            # Noise §7.5 XX message 2, "<- e, ee, s, es": the responder's identity binding
            # (§7.7 confidentiality 1: anyone who dials the responder learns it).
            assert hs.remote_static is not None
            self._accept_identity(read_identity_payload(payload, hs.remote_static))
            # XX message 3, "-> s, se": ours (§7.7 confidentiality 5), sent only once the
            # responder proved itself, so a prober never learns who dialed.
            self._outbox.append(hs.write_message(self._identity_payload()))
            return self._finish_handshake()
        if not hs.is_finished and hs.remote_static is None:
            # XX message 1, "-> e": nothing may ride on it (§7.7 confidentiality 0: clear).
            if payload:
                raise LinkRemoteError("handshake", "message 1 carries a payload")
            self._outbox.append(hs.write_message(self._identity_payload()))
            return []
        assert hs.remote_static is not None
        self._accept_identity(read_identity_payload(payload, hs.remote_static))
        return self._finish_handshake()

    def _identity_payload(self) -> bytes:
        return identity_payload(self._identity, self._static.public)

    def _accept_identity(self, peer_id: bytes) -> None:
        if self._expected is not None and peer_id != self._expected:
            raise LinkRemoteError("unexpected-peer", "the peer proved another identity")
        self._peer_id = peer_id

    def _finish_handshake(self) -> list[Event]:
        hs = self._hs
        assert hs is not None and hs.is_finished and self._peer_id is not None
        self._handshake_hash = hs.handshake_hash
        self._transport = hs.split()
        self._hs = None
        for room_id, room in self._rooms.items():
            self._offer(room_id, room)
        return [HandshakeComplete(self._peer_id, self._handshake_hash)]

    def _receive_frame(self, message: bytes) -> list[Event]:
        assert self._transport is not None
        if len(message) > MAX_FRAME + _TAG_LEN:
            raise LinkRemoteError("oversized", f"transport message of {len(message)} bytes")
        try:
            plaintext = self._transport.decrypt(message)
        except NoiseRemoteError as exc:
            raise LinkRemoteError("decrypt", str(exc)) from exc
        frame = decode_frame(plaintext)
        if isinstance(frame, Ping):
            return []
        room = self._rooms.get(frame.room_id)
        if isinstance(frame, Data):
            if room is None or not room.peer_proven:
                raise LinkRemoteError("unauthorized-room", "data for a room not proven")
            return [Message(frame.room_id, frame.payload)]
        if isinstance(frame, RoomUnknown):
            if room is None:
                raise LinkRemoteError("unsolicited", "unknown-room answer to no proof of ours")
            room.proof_sent = False
            room.peer_proven = False
            return [RoomDenied(frame.room_id)]
        return self._receive_proof(frame, room)

    def _receive_proof(self, frame: RoomProof, room: _Room | None) -> list[Event]:
        if room is None or room.refused:
            # The same answer whether we lack the room or refused it: says nothing.
            self._queue(RoomUnknown(frame.room_id))
            return []
        # The proof must be in the peer's role: our own proof reflected back fails here.
        if not check_room_proof(
            frame.proof,
            room.secret,
            initiator=not self._initiator,
            handshake_hash=self.handshake_hash,
            room_id=frame.room_id,
        ):
            room.refused = True
            room.peer_proven = False
            self._queue(RoomUnknown(frame.room_id))
            return [RoomRefused(frame.room_id)]
        if room.peer_proven:
            return []
        room.peer_proven = True
        self._offer(frame.room_id, room)
        return [RoomAuthorized(frame.room_id)]
