"""HandshakeState (Noise §5.3) and the transport it splits into: the sans-IO handshake core.

Bytes in, bytes out: :meth:`HandshakeState.write_message` returns the next message to put
on the wire and :meth:`HandshakeState.read_message` takes one off it. The engine walks the
tokens of a :class:`HandshakePattern` (Noise §7); it knows no pattern by name. Framing,
sockets, timeouts and the identities inside the payloads belong to the link layer.

The state machine is strict: a call out of turn, after the end, or after a failure is a
:class:`NoiseLocalError`; anything wrong with a received message is a
:class:`NoiseRemoteError`, and it fails the handshake for good (Noise §5.3 leaves no way to
resume after an error). This module must never do IO, read the clock, or let an exception
from pyca escape.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._errors import NoiseLocalError, NoiseMalformedError, NoiseRemoteError
from ._patterns import NoiseProtocol, Token, parse_protocol_name
from ._primitives import TAG_LEN, KeyPair
from ._state import CipherState, SymmetricState

__all__ = ["MAX_MESSAGE_LEN", "HandshakeState", "TransportState"]

MAX_MESSAGE_LEN = 65535
"""Noise §3: "All Noise messages are less than or equal to 65535 bytes in length"."""


class HandshakeState:
    """One side of one handshake: Initialize, then alternate write/read, then :meth:`split`.

    ``e`` fixes this side's ephemeral key pair instead of generating one, for test
    vectors (Noise §5.3 Initialize takes ``e`` too); never reuse one in production.
    """

    def __init__(
        self,
        protocol: str | NoiseProtocol,
        *,
        initiator: bool,
        prologue: bytes = b"",
        s: KeyPair | None = None,
        rs: bytes | None = None,
        psks: Sequence[bytes] = (),
        e: KeyPair | None = None,
    ) -> None:
        self._protocol = (
            protocol if isinstance(protocol, NoiseProtocol) else parse_protocol_name(protocol)
        )
        pattern = self._protocol.pattern
        dh = self._protocol.dh
        self._initiator = bool(initiator)
        self._check_keys(s=s, rs=rs, e=e, psks=psks)
        if not isinstance(prologue, bytes | bytearray | memoryview):
            raise NoiseLocalError("prologue must be bytes")
        self._s = s
        self._e = e
        self._rs: bytes | None = None
        self._re: bytes | None = None
        self._psks = [bytes(p) for p in psks]
        self._psk_mode = pattern.psk_count > 0
        self._index = 0
        self._failed = False
        self._split_done = False

        # Noise §5.3 Initialize(): "Calls InitializeSymmetric(protocol_name)."
        self._ss = SymmetricState(
            self._protocol.name.encode("ascii"), self._protocol.cipher, self._protocol.hash
        )
        # "Calls MixHash(prologue)."
        self._ss.mix_hash(bytes(prologue))
        # "Calls MixHash() once for each public key listed in the pre-messages from
        # handshake_pattern, with the specified public key as input ... If both initiator
        # and responder have pre-messages, the initiator's public keys are hashed first."
        if rs is not None:
            try:
                dh.check_public(rs)
            except NoiseRemoteError as exc:
                raise NoiseLocalError(f"the given remote static key is unusable: {exc}") from exc
            self._rs = bytes(rs)
        for pre_initiator in (True, False):
            pre = pattern.initiator_pre if pre_initiator else pattern.responder_pre
            if "s" in pre:  # the only pre-message token the supported patterns use
                key = self._s if pre_initiator == self._initiator else None
                public = key.public if key is not None else self._rs
                assert public is not None  # _check_keys guarantees it
                self._ss.mix_hash(public)

    def _check_keys(
        self,
        *,
        s: KeyPair | None,
        rs: bytes | None,
        e: KeyPair | None,
        psks: Sequence[bytes],
    ) -> None:
        pattern = self._protocol.pattern
        me, peer = self._initiator, not self._initiator
        for what, value in (("s", s), ("e", e)):
            if value is not None and not isinstance(value, KeyPair):
                raise NoiseLocalError(f"{what} must be a KeyPair")
        needs_s = pattern.sends(me, "s")
        if needs_s and s is None:
            raise NoiseLocalError(f"{pattern.name} needs this side's static key pair s")
        if not needs_s and s is not None:
            raise NoiseLocalError(f"{pattern.name} never uses this side's static key s")
        peer_pre = pattern.initiator_pre if peer else pattern.responder_pre
        if "e" in pattern.initiator_pre + pattern.responder_pre:
            # Only the fallback patterns (Noise §10.2) pre-share an ephemeral key.
            raise NoiseLocalError("pre-message ephemeral keys are not supported")
        if ("s" in peer_pre) != (rs is not None):
            raise NoiseLocalError(
                f"{pattern.name}: rs must be given exactly when the peer's static key is a "
                "pre-message"
            )
        if rs is not None and (
            not isinstance(rs, bytes | bytearray | memoryview) or len(rs) != self._protocol.dh.dhlen
        ):
            raise NoiseLocalError(f"rs must be {self._protocol.dh.dhlen} bytes")
        if isinstance(psks, bytes | bytearray | str):
            raise NoiseLocalError("psks is a sequence of keys, not one key")
        if len(psks) != pattern.psk_count:
            raise NoiseLocalError(
                f"{pattern.name} needs {pattern.psk_count} pre-shared keys, got {len(psks)}"
            )
        for psk in psks:
            # Noise §9.1: pre-shared keys are 32 bytes.
            if not isinstance(psk, bytes | bytearray | memoryview) or len(psk) != 32:
                raise NoiseLocalError("every pre-shared key must be 32 bytes")

    # -- introspection ----------------------------------------------------------------

    @property
    def protocol(self) -> NoiseProtocol:
        """The parsed protocol this handshake runs."""
        return self._protocol

    @property
    def initiator(self) -> bool:
        """Whether this side is the initiator."""
        return self._initiator

    @property
    def is_finished(self) -> bool:
        """Whether every handshake message has been written or read."""
        return self._index >= len(self._protocol.pattern.messages)

    @property
    def is_my_turn(self) -> bool:
        """Whether the next step is :meth:`write_message` (False once finished or failed)."""
        if self._failed or self.is_finished:
            return False
        return self._protocol.pattern.messages[self._index].from_initiator == self._initiator

    @property
    def has_failed(self) -> bool:
        """Whether a received message was rejected; the handshake cannot go on."""
        return self._failed

    @property
    def local_static(self) -> bytes | None:
        """This side's static public key, if the pattern has one."""
        return self._s.public if self._s else None

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static public key once known (pre-message or received), else None."""
        return self._rs

    @property
    def handshake_hash(self) -> bytes:
        """GetHandshakeHash() for channel binding (Noise §11.2); only once finished."""
        if not self.is_finished or self._failed:
            raise NoiseLocalError("the handshake hash is only final once the handshake is")
        return self._ss.get_handshake_hash()

    # -- the state machine ------------------------------------------------------------

    def _check_step(self, writing: bool) -> Sequence[Token]:
        if self._failed:
            raise NoiseLocalError("the handshake failed earlier and cannot be used")
        if self.is_finished:
            raise NoiseLocalError("the handshake is finished: call split() for transport")
        message = self._protocol.pattern.messages[self._index]
        if (message.from_initiator == self._initiator) != writing:
            raise NoiseLocalError(
                "it is the other side's turn to write" if writing else "it is our turn to write"
            )
        return message.tokens

    def _message_overhead(self, tokens: Sequence[Token]) -> int:
        # Bytes a message adds around its payload, predicted before any state changes so
        # that an oversized payload is refused without corrupting the handshake.
        dhlen = self._protocol.dh.dhlen
        has_key = self._ss.cipher_state.has_key()
        size = 0
        for token in tokens:
            if token == "e":
                size += dhlen
                has_key = has_key or self._psk_mode
            elif token == "s":
                size += dhlen + (TAG_LEN if has_key else 0)
            else:
                has_key = True
        return size + (TAG_LEN if has_key else 0)

    def write_message(self, payload: bytes = b"") -> bytes:
        """WriteMessage(payload): the next handshake message, for the link to send."""
        tokens = self._check_step(writing=True)
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise NoiseLocalError("payload must be bytes")
        if len(payload) + self._message_overhead(tokens) > MAX_MESSAGE_LEN:
            raise NoiseLocalError(
                f"payload of {len(payload)} bytes makes a message over {MAX_MESSAGE_LEN} (§3)"
            )
        dh = self._protocol.dh
        out = bytearray()
        for token in tokens:
            if token == "e":
                # Noise §5.3: "Sets e (which must be empty) to GENERATE_KEYPAIR(). Appends
                # e.public_key to the buffer. Calls MixHash(e.public_key)."
                if self._e is None:
                    self._e = dh.generate_keypair()
                out += self._e.public
                self._ss.mix_hash(self._e.public)
                if self._psk_mode:
                    self._ss.mix_key(self._e.public)  # Noise §9.2
            elif token == "s":
                # "Appends EncryptAndHash(s.public_key) to the buffer."
                assert self._s is not None
                out += self._ss.encrypt_and_hash(self._s.public)
            elif token == "psk":
                self._ss.mix_key_and_hash(self._psks.pop(0))  # Noise §9.2
            else:
                self._mix_dh(token)
        # "Appends EncryptAndHash(payload) to the buffer."
        out += self._ss.encrypt_and_hash(bytes(payload))
        self._index += 1
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        """ReadMessage(message): the payload of a received handshake message.

        Raises :class:`NoiseRemoteError` (and fails the handshake) for anything wrong with
        ``message``; :class:`NoiseLocalError` if it is not our turn to read.
        """
        tokens = self._check_step(writing=False)
        if not isinstance(message, bytes | bytearray | memoryview):
            raise NoiseLocalError("message must be bytes")
        try:
            payload = self._read(tokens, bytes(message))
        except NoiseRemoteError:
            self._failed = True
            raise
        self._index += 1
        return payload

    def _read(self, tokens: Sequence[Token], message: bytes) -> bytes:
        if len(message) > MAX_MESSAGE_LEN:
            raise NoiseMalformedError(f"message of {len(message)} bytes exceeds {MAX_MESSAGE_LEN}")
        dh = self._protocol.dh
        dhlen = dh.dhlen
        pos = 0

        def take(n: int, what: str) -> bytes:
            nonlocal pos
            if len(message) - pos < n:
                raise NoiseMalformedError(f"message too short for {what}")
            chunk = message[pos : pos + n]
            pos += n
            return chunk

        for token in tokens:
            if token == "e":
                # Noise §5.3: "Sets re (which must be empty) to the next DHLEN bytes from the
                # message. Calls MixHash(re.public_key)."
                re = take(dhlen, "the ephemeral key")
                dh.check_public(re)  # a low-order key is refused on arrival (§4.1 allows it)
                self._re = re
                self._ss.mix_hash(re)
                if self._psk_mode:
                    self._ss.mix_key(re)  # Noise §9.2
            elif token == "s":
                # "Sets temp to the next DHLEN + 16 bytes of the message if HasKey() == True,
                # or to the next DHLEN bytes otherwise. Sets rs ... to DecryptAndHash(temp)."
                n = dhlen + (TAG_LEN if self._ss.cipher_state.has_key() else 0)
                rs = self._ss.decrypt_and_hash(take(n, "the static key"))
                dh.check_public(rs)
                self._rs = rs
            elif token == "psk":
                self._ss.mix_key_and_hash(self._psks.pop(0))  # Noise §9.2
            else:
                self._mix_dh(token)
        rest = message[pos:]
        if self._ss.cipher_state.has_key() and len(rest) < TAG_LEN:
            raise NoiseMalformedError("message too short for the payload's tag")
        # "Calls DecryptAndHash() on the remaining bytes of the message and stores the
        # output into payload_buffer."
        return self._ss.decrypt_and_hash(rest)

    def _mix_dh(self, token: Token) -> None:
        # Noise §5.3: "ee": MixKey(DH(e, re)); "es": MixKey(DH(e, rs)) if initiator,
        # MixKey(DH(s, re)) if responder; "se": MixKey(DH(s, re)) if initiator,
        # MixKey(DH(e, rs)) if responder; "ss": MixKey(DH(s, rs)).
        local, remote = token[0], token[1]
        if not self._initiator:
            local, remote = remote, local
        key_pair = self._e if local == "e" else self._s
        public = self._re if remote == "e" else self._rs
        if key_pair is None or public is None:  # impossible for the spec's patterns
            raise NoiseLocalError(f"token {token!r} needs a key this handshake does not have")
        self._ss.mix_key(self._protocol.dh.dh(key_pair, public))

    def split(self) -> TransportState:
        """Split() into the transport state (Noise §5.2); allowed once, when finished.

        A second split would hand out two CipherStates with the same keys and nonces,
        which would reuse nonces, so it is refused.
        """
        if self._failed:
            raise NoiseLocalError("the handshake failed and has nothing to split")
        if not self.is_finished:
            raise NoiseLocalError("split() before the handshake is finished")
        if self._split_done:
            raise NoiseLocalError("split() was already called for this handshake")
        self._split_done = True
        c1, c2 = self._ss.split()
        if self._protocol.pattern.one_way:
            # Noise §7.4: one-way patterns only allow the initiator to send.
            send, recv = (c1, None) if self._initiator else (None, c1)
        else:
            send, recv = (c1, c2) if self._initiator else (c2, c1)
        return TransportState(
            send=send,
            recv=recv,
            handshake_hash=self._ss.get_handshake_hash(),
            remote_static=self._rs,
            initiator=self._initiator,
        )


class TransportState:
    """The two directions of an established session (Noise §5): encrypt out, decrypt in."""

    __slots__ = ("_recv", "_send", "handshake_hash", "initiator", "remote_static")

    def __init__(
        self,
        *,
        send: CipherState | None,
        recv: CipherState | None,
        handshake_hash: bytes,
        remote_static: bytes | None,
        initiator: bool,
    ) -> None:
        self._send = send
        self._recv = recv
        self.handshake_hash = handshake_hash
        """The final handshake hash, for channel binding (Noise §11.2)."""
        self.remote_static = remote_static
        """The peer's static public key, if the pattern had one."""
        self.initiator = initiator
        """Whether this side was the initiator."""

    def __repr__(self) -> str:
        return f"TransportState(initiator={self.initiator}, send={self._send}, recv={self._recv})"

    @property
    def send_cipher(self) -> CipherState:
        """The CipherState for outgoing messages (for nonce inspection)."""
        if self._send is None:
            raise NoiseLocalError("a one-way responder cannot send")
        return self._send

    @property
    def recv_cipher(self) -> CipherState:
        """The CipherState for incoming messages (for nonce inspection)."""
        if self._recv is None:
            raise NoiseLocalError("a one-way initiator cannot receive")
        return self._recv

    def encrypt(self, plaintext: bytes, ad: bytes = b"") -> bytes:
        """A transport message carrying ``plaintext`` (at most 65535 - 16 bytes)."""
        if not isinstance(plaintext, bytes | bytearray | memoryview):
            raise NoiseLocalError("plaintext must be bytes")
        if len(plaintext) + TAG_LEN > MAX_MESSAGE_LEN:
            raise NoiseLocalError(
                f"plaintext of {len(plaintext)} bytes makes a message over {MAX_MESSAGE_LEN} (§3)"
            )
        return self.send_cipher.encrypt_with_ad(ad, plaintext)

    def decrypt(self, ciphertext: bytes, ad: bytes = b"") -> bytes:
        """The plaintext of a received transport message; raises :class:`NoiseRemoteError`."""
        cipher = self.recv_cipher
        if not isinstance(ciphertext, bytes | bytearray | memoryview):
            raise NoiseLocalError("ciphertext must be bytes")
        if len(ciphertext) > MAX_MESSAGE_LEN:
            raise NoiseMalformedError(
                f"message of {len(ciphertext)} bytes exceeds {MAX_MESSAGE_LEN}"
            )
        if len(ciphertext) < TAG_LEN:
            raise NoiseMalformedError(f"message of {len(ciphertext)} bytes is shorter than a tag")
        return cipher.decrypt_with_ad(ad, ciphertext)

    def rekey_send(self) -> None:
        """Rekey the outgoing direction (Noise §11.3); the peer must rekey_recv in step."""
        self.send_cipher.rekey()

    def rekey_recv(self) -> None:
        """Rekey the incoming direction (Noise §11.3)."""
        self.recv_cipher.rekey()
