"""Behaviour of node.noise beyond the known-answer vectors.

Round trips over every supported pattern, psk placement and hash; the fuzz invariant
(a received message is valid or raises NoiseRemoteError, nothing else); low-order keys and
forged tags; and misuse, which must raise NoiseLocalError.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import node.noise
from node.noise import (
    HASH_FUNCTIONS,
    MAX_MESSAGE_LEN,
    PATTERNS,
    CipherState,
    HandshakeState,
    KeyPair,
    NoiseBadKeyError,
    NoiseDecryptError,
    NoiseError,
    NoiseLocalError,
    NoiseMalformedError,
    NoiseRemoteError,
    TransportState,
    parse_protocol_name,
)
from node.noise._primitives import MAX_NONCE

XX = "Noise_XX_25519_ChaChaPoly_BLAKE2b"
HASHES = sorted(HASH_FUNCTIONS)

# Low-order X25519 points (RFC 7748 §6.1), including non-canonical encodings: 0, 1, an
# order-8 point, p - 1 (order 2) and p (a second encoding of 0).
LOW_ORDER_POINTS = [
    bytes(32),
    bytes([1]) + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


def _fixed(seed: int) -> KeyPair:
    return KeyPair.from_private(bytes([seed]) * 32)


def make_pair(
    name: str, *, deterministic: bool = False, prologue: bytes = b"rumor"
) -> tuple[HandshakeState, HandshakeState]:
    """An initiator and a responder for ``name`` with whatever keys the pattern needs."""
    pattern = parse_protocol_name(name).pattern

    def new(seed: int) -> KeyPair:
        return _fixed(seed) if deterministic else KeyPair.generate()

    i_s = new(1) if pattern.sends(True, "s") else None
    r_s = new(2) if pattern.sends(False, "s") else None
    psks = [bytes([0x70 + k]) * 32 for k in range(pattern.psk_count)]
    initiator = HandshakeState(
        name,
        initiator=True,
        prologue=prologue,
        s=i_s,
        rs=r_s.public if r_s is not None and "s" in pattern.responder_pre else None,
        psks=psks,
        e=_fixed(3) if deterministic else None,
    )
    responder = HandshakeState(
        name,
        initiator=False,
        prologue=prologue,
        s=r_s,
        rs=i_s.public if i_s is not None and "s" in pattern.initiator_pre else None,
        psks=psks,
        e=_fixed(4) if deterministic else None,
    )
    return initiator, responder


def handshake(
    initiator: HandshakeState, responder: HandshakeState
) -> tuple[TransportState, TransportState]:
    """Run a whole handshake, checking every payload arrives, and split both sides."""
    index = 0
    while not initiator.is_finished:
        writer, reader = (initiator, responder) if index % 2 == 0 else (responder, initiator)
        assert writer.is_my_turn
        assert not reader.is_my_turn
        payload = b"handshake payload %d" % index
        assert reader.read_message(writer.write_message(payload)) == payload
        index += 1
    assert responder.is_finished
    assert not initiator.is_my_turn
    assert not responder.is_my_turn
    return initiator.split(), responder.split()


# -- round trips --------------------------------------------------------------------------


def _psk_variants(base: str) -> list[str]:
    n = len(PATTERNS[base].messages)
    return ["", *(f"psk{k}" for k in range(n + 1)), f"psk0+psk{n}"]


ROUND_TRIP_PATTERNS = [base + variant for base in PATTERNS for variant in _psk_variants(base)]


def _check_round_trip(name: str) -> None:
    initiator, responder = make_pair(name)
    pattern = initiator.protocol.pattern
    i_static, r_static = initiator.local_static, responder.local_static
    to_responder, to_initiator = handshake(initiator, responder)

    hash_len = initiator.protocol.hash.hashlen
    assert len(initiator.handshake_hash) == hash_len
    assert initiator.handshake_hash == responder.handshake_hash
    assert to_responder.handshake_hash == to_initiator.handshake_hash == initiator.handshake_hash
    # Each side learns the peer's static key exactly when the pattern conveys one.
    assert initiator.remote_static == r_static
    assert responder.remote_static == i_static
    assert to_initiator.remote_static == i_static

    for round_ in range(3):
        message = b"to responder %d" % round_
        assert to_initiator.decrypt(to_responder.encrypt(message)) == message
        if pattern.one_way:
            # Noise §7.4: after a one-way handshake only the initiator sends.
            with pytest.raises(NoiseLocalError):
                to_initiator.encrypt(b"no")
            with pytest.raises(NoiseLocalError):
                to_responder.decrypt(bytes(32))
        else:
            reply = b"to initiator %d" % round_
            assert to_responder.decrypt(to_initiator.encrypt(reply)) == reply
        to_responder.rekey_send()
        to_initiator.rekey_recv()
    ad_message = to_responder.encrypt(b"with ad", ad=b"header")
    assert to_initiator.decrypt(ad_message, ad=b"header") == b"with ad"


@pytest.mark.parametrize("hash_name", HASHES)
@pytest.mark.parametrize("pattern", ROUND_TRIP_PATTERNS)
def test_round_trip_chachapoly(pattern: str, hash_name: str) -> None:
    _check_round_trip(f"Noise_{pattern}_25519_ChaChaPoly_{hash_name}")


@pytest.mark.parametrize("hash_name", HASHES)
@pytest.mark.parametrize("base", sorted(PATTERNS))
def test_round_trip_aesgcm(base: str, hash_name: str) -> None:
    _check_round_trip(f"Noise_{base}_25519_AESGCM_{hash_name}")


def test_all_fifteen_spec_patterns_are_supported() -> None:
    assert set(PATTERNS) == {
        "N", "K", "X",
        "NN", "NK", "NX", "KN", "KK", "KX", "XN", "XK", "XX", "IN", "IK", "IX",
    }  # fmt: skip


def test_xx_message_sizes() -> None:
    """XX with empty payloads: e; e, s+tag, tag; s+tag, tag (Noise §7.5)."""
    initiator, responder = make_pair(XX)
    sizes = []
    for index in range(3):
        writer, reader = (initiator, responder) if index % 2 == 0 else (responder, initiator)
        wire = writer.write_message()
        reader.read_message(wire)
        sizes.append(len(wire))
    assert sizes == [32, 32 + 48 + 16, 48 + 16]


def test_psk_modifiers_place_tokens() -> None:
    """Noise §9.4: psk0 opens the first message, pskN closes the Nth."""
    pattern = parse_protocol_name("Noise_XXpsk0+psk3_25519_ChaChaPoly_SHA256").pattern
    assert pattern.name == "XXpsk0+psk3"
    assert [m.tokens for m in pattern.messages] == [
        ("psk", "e"),
        ("e", "ee", "s", "es"),
        ("s", "se", "psk"),
    ]
    assert pattern.psk_count == 2


def test_mismatched_psk_fails_with_remote_error() -> None:
    name = "Noise_NNpsk2_25519_ChaChaPoly_BLAKE2b"
    initiator = HandshakeState(name, initiator=True, psks=[bytes(32)])
    responder = HandshakeState(name, initiator=False, psks=[bytes([1]) * 32])
    responder.read_message(initiator.write_message(b"hi"))
    with pytest.raises(NoiseDecryptError):
        initiator.read_message(responder.write_message(b"there"))


def test_mismatched_prologue_fails_with_remote_error() -> None:
    initiator, _ = make_pair(XX, prologue=b"one")
    _, responder = make_pair(XX, prologue=b"two")
    responder.read_message(initiator.write_message())
    with pytest.raises(NoiseDecryptError):
        initiator.read_message(responder.write_message())


def test_long_protocol_name_is_hashed() -> None:
    """Noise §5.2: a name longer than HASHLEN is hashed into h; both sides still agree."""
    name = "Noise_XXpsk0+psk1+psk2+psk3_25519_ChaChaPoly_BLAKE2s"
    assert len(name) > 32
    _check_round_trip(name)


# -- bad input: low-order keys and forged tags --------------------------------------------


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8])
@pytest.mark.parametrize("name", [XX, "Noise_NN_25519_ChaChaPoly_SHA256"])
def test_responder_rejects_low_order_ephemeral(name: str, point: bytes) -> None:
    _, responder = make_pair(name)
    with pytest.raises(NoiseBadKeyError) as info:
        responder.read_message(point + b"payload")
    assert isinstance(info.value, NoiseRemoteError)
    assert isinstance(info.value.__cause__, ValueError)  # pyca's error, wrapped
    assert responder.has_failed
    with pytest.raises(NoiseLocalError):
        responder.read_message(bytes(32))


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8])
def test_initiator_rejects_low_order_ephemeral(point: bytes) -> None:
    initiator, _ = make_pair(XX)
    initiator.write_message()
    with pytest.raises(NoiseBadKeyError):
        initiator.read_message(point + bytes(64))


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8])
def test_responder_rejects_low_order_static(point: bytes) -> None:
    """An evil IK initiator encrypts a low-order static key; the responder refuses it."""
    name = "Noise_IK_25519_ChaChaPoly_BLAKE2b"
    initiator, responder = make_pair(name)
    assert initiator.local_static is not None
    evil = initiator._s
    assert evil is not None
    object.__setattr__(evil, "public", point)  # forge the advertised key, keep the private
    with pytest.raises(NoiseBadKeyError):
        responder.read_message(initiator.write_message(b"hello"))
    assert responder.remote_static is None


def test_local_low_order_remote_static_is_local_error() -> None:
    with pytest.raises(NoiseLocalError):
        HandshakeState(
            "Noise_IK_25519_ChaChaPoly_BLAKE2b",
            initiator=True,
            s=KeyPair.generate(),
            rs=LOW_ORDER_POINTS[2],
        )


def test_forged_handshake_tag_is_remote_error() -> None:
    initiator, responder = make_pair(XX)
    responder.read_message(initiator.write_message())
    wire = bytearray(responder.write_message(b"identity"))
    wire[-1] ^= 0x01
    with pytest.raises(NoiseDecryptError) as info:
        initiator.read_message(bytes(wire))
    assert info.value.reason == "decrypt"
    assert initiator.has_failed
    with pytest.raises(NoiseLocalError):
        initiator.write_message()
    with pytest.raises(NoiseLocalError):
        initiator.split()


def test_forged_transport_tag_is_remote_error_and_recoverable() -> None:
    """Noise §5.1: a failed decryption does not advance n, so the real message still opens."""
    to_responder, to_initiator = handshake(*make_pair(XX))
    genuine = to_responder.encrypt(b"hello")
    forged = genuine[:-1] + bytes([genuine[-1] ^ 0x80])
    with pytest.raises(NoiseDecryptError):
        to_initiator.decrypt(forged)
    assert to_initiator.recv_cipher.nonce == 0
    assert to_initiator.decrypt(genuine) == b"hello"
    with pytest.raises(NoiseDecryptError):
        to_initiator.decrypt(genuine)  # a replay uses the wrong nonce now


def test_transport_length_limits() -> None:
    to_responder, to_initiator = handshake(*make_pair(XX))
    with pytest.raises(NoiseMalformedError):
        to_initiator.decrypt(bytes(MAX_MESSAGE_LEN + 1))
    with pytest.raises(NoiseMalformedError):
        to_initiator.decrypt(bytes(15))
    largest = bytes(MAX_MESSAGE_LEN - 16)
    assert to_initiator.decrypt(to_responder.encrypt(largest)) == largest
    with pytest.raises(NoiseLocalError):
        to_responder.encrypt(largest + b"x")


def test_handshake_length_limits() -> None:
    initiator, responder = make_pair(XX)
    with pytest.raises(NoiseLocalError):
        initiator.write_message(bytes(MAX_MESSAGE_LEN - 32 + 1))
    # The refusal left the state untouched: the largest payload still fits.
    wire = initiator.write_message(bytes(MAX_MESSAGE_LEN - 32))
    assert len(wire) == MAX_MESSAGE_LEN
    responder.read_message(wire)
    # Message 2 carries e, s+tag and a tag around the payload.
    with pytest.raises(NoiseLocalError):
        responder.write_message(bytes(MAX_MESSAGE_LEN - 96 + 1))
    _, fresh = make_pair(XX)
    with pytest.raises(NoiseMalformedError):
        fresh.read_message(bytes(MAX_MESSAGE_LEN + 1))


def test_short_handshake_messages_are_malformed() -> None:
    _, responder = make_pair(XX)
    with pytest.raises(NoiseMalformedError):
        responder.read_message(bytes(31))
    initiator, _ = make_pair(XX)
    initiator.write_message()
    with pytest.raises(NoiseMalformedError):
        initiator.read_message(_fixed(9).public + bytes(47))  # e, then too little for s


# -- fuzzing: valid, or the remote error ----------------------------------------------------

FUZZ_PATTERNS = [
    XX,
    "Noise_NN_25519_ChaChaPoly_SHA256",
    "Noise_IK_25519_ChaChaPoly_BLAKE2s",
    "Noise_KK_25519_AESGCM_SHA512",
    "Noise_XKpsk3_25519_ChaChaPoly_BLAKE2b",
    "Noise_NXpsk0+psk2_25519_ChaChaPoly_SHA256",
    "Noise_IXpsk2_25519_ChaChaPoly_BLAKE2b",
    "Noise_N_25519_ChaChaPoly_BLAKE2b",
    "Noise_Xpsk1_25519_ChaChaPoly_SHA256",
]


@st.composite
def _mutations(draw: st.DrawFn) -> tuple[str, int, int, bytes]:
    kind = draw(st.sampled_from(["flip", "truncate", "extend", "overwrite", "replace"]))
    position = draw(st.integers(min_value=0, max_value=2**16))
    data = draw(st.binary(min_size=1, max_size=80))
    return kind, position, draw(st.integers(0, 7)), data


def _mutate(wire: bytes, mutation: tuple[str, int, int, bytes]) -> bytes:
    kind, position, bit, data = mutation
    if kind == "flip":
        at = position % len(wire)
        return wire[:at] + bytes([wire[at] ^ (1 << bit)]) + wire[at + 1 :]
    if kind == "truncate":
        return wire[: position % len(wire)]
    if kind == "extend":
        return wire + data
    if kind == "overwrite":
        at = position % len(wire)
        return wire[:at] + data + wire[at + len(data) :]
    return data


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(FUZZ_PATTERNS), target=st.integers(0, 2), mutation=_mutations())
def test_tampered_handshake_ends_in_remote_error(
    name: str, target: int, mutation: tuple[str, int, int, bytes]
) -> None:
    """Any change to any handshake message makes some read_message raise NoiseRemoteError.

    Early messages may be read "successfully" (their payload may be plaintext), but the
    change is in h, so a later message fails to authenticate; nothing else may be raised.
    """
    initiator, responder = make_pair(name, deterministic=True)
    n_messages = len(initiator.protocol.pattern.messages)
    target %= n_messages
    for index in range(n_messages):
        writer, reader = (initiator, responder) if index % 2 == 0 else (responder, initiator)
        wire = writer.write_message(b"payload")
        if index == target:
            tampered = _mutate(wire, mutation)
            assume(tampered != wire)
            wire = tampered
        try:
            reader.read_message(wire)
        except NoiseRemoteError:
            assert reader.has_failed
            assert index >= target
            return
    pytest.fail("a tampered handshake completed")


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(FUZZ_PATTERNS), data=st.binary(max_size=300), step=st.booleans())
def test_arbitrary_bytes_are_valid_or_remote_error(name: str, data: bytes, step: bool) -> None:
    """The one invariant for any received handshake or transport message."""
    initiator, responder = make_pair(name, deterministic=True)
    reader = responder
    if step and len(initiator.protocol.pattern.messages) > 1:
        responder.read_message(initiator.write_message())
        reader = initiator
        data = responder.write_message()[:32] + data  # a genuine e, then junk
    with contextlib.suppress(NoiseRemoteError):
        reader.read_message(data)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=200))
def test_arbitrary_transport_bytes_raise_remote_error(data: bytes) -> None:
    _, to_initiator = handshake(*make_pair(XX, deterministic=True))
    with pytest.raises(NoiseRemoteError):
        to_initiator.decrypt(data)


# -- misuse: NoiseLocalError ------------------------------------------------------------------


def test_turn_order_is_enforced() -> None:
    initiator, responder = make_pair(XX)
    with pytest.raises(NoiseLocalError):
        responder.write_message()  # the initiator speaks first
    with pytest.raises(NoiseLocalError):
        initiator.read_message(bytes(32))
    wire = initiator.write_message()
    with pytest.raises(NoiseLocalError):
        initiator.write_message()  # twice in a row
    responder.read_message(wire)
    with pytest.raises(NoiseLocalError):
        responder.read_message(wire)


def test_finished_handshake_refuses_more_messages() -> None:
    initiator, responder = make_pair(XX)
    with pytest.raises(NoiseLocalError):
        initiator.split()
    with pytest.raises(NoiseLocalError):
        _ = initiator.handshake_hash
    handshake(initiator, responder)
    for side in (initiator, responder):
        with pytest.raises(NoiseLocalError):
            side.write_message()
        with pytest.raises(NoiseLocalError):
            side.read_message(bytes(64))
        with pytest.raises(NoiseLocalError):
            side.split()  # a second split would reuse nonces


@pytest.mark.parametrize(
    "name",
    [
        "Noise_XX_25519_ChaChaPoly",
        "Noise_XX_25519_ChaChaPoly_BLAKE2b_extra",
        "Nois_XX_25519_ChaChaPoly_BLAKE2b",
        "Noise_ZZ_25519_ChaChaPoly_BLAKE2b",
        "Noise_xx_25519_ChaChaPoly_BLAKE2b",
        "Noise_XX_448_ChaChaPoly_BLAKE2b",
        "Noise_XX_25519_Twofish_BLAKE2b",
        "Noise_XX_25519_ChaChaPoly_MD5",
        "Noise_XXpsk4_25519_ChaChaPoly_BLAKE2b",
        "Noise_NNpsk3_25519_ChaChaPoly_BLAKE2b",
        "Noise_XXpsk0+psk0_25519_ChaChaPoly_BLAKE2b",
        "Noise_XXpsk01_25519_ChaChaPoly_BLAKE2b",
        "Noise_XXfallback_25519_ChaChaPoly_BLAKE2b",
        "Noise_XXpsk0+_25519_ChaChaPoly_BLAKE2b",
        "Noise_XX_25519+Kyber1024_ChaChaPoly_BLAKE2b",
        "Noise_XX_25519_ChaChaPoly_BLAKE2b\u00e9",
    ],
)
def test_bad_protocol_names_are_local_errors(name: str) -> None:
    with pytest.raises(NoiseLocalError):
        parse_protocol_name(name)
    with pytest.raises(NoiseLocalError):
        HandshakeState(name, initiator=True)


def test_keys_must_match_the_pattern() -> None:
    s = KeyPair.generate()
    with pytest.raises(NoiseLocalError):
        HandshakeState(XX, initiator=True)  # XX sends s
    with pytest.raises(NoiseLocalError):
        HandshakeState("Noise_NN_25519_ChaChaPoly_BLAKE2b", initiator=True, s=s)
    with pytest.raises(NoiseLocalError):
        HandshakeState(XX, initiator=True, s=s, rs=s.public)  # XX has no pre-message
    with pytest.raises(NoiseLocalError):
        HandshakeState("Noise_IK_25519_ChaChaPoly_BLAKE2b", initiator=True, s=s)  # needs rs
    with pytest.raises(NoiseLocalError):
        HandshakeState("Noise_IK_25519_ChaChaPoly_BLAKE2b", initiator=True, s=s, rs=b"short")
    with pytest.raises(NoiseLocalError):
        HandshakeState(XX, initiator=True, s=s, prologue="text")  # type: ignore[arg-type]
    with pytest.raises(NoiseLocalError):
        HandshakeState(XX, initiator=True, s=s.public)  # type: ignore[arg-type]


def test_psks_must_match_the_pattern() -> None:
    name = "Noise_NNpsk0+psk2_25519_ChaChaPoly_BLAKE2b"
    with pytest.raises(NoiseLocalError):
        HandshakeState(name, initiator=True, psks=[bytes(32)])
    with pytest.raises(NoiseLocalError):
        HandshakeState(name, initiator=True, psks=[bytes(32), bytes(31)])
    with pytest.raises(NoiseLocalError):
        HandshakeState(name, initiator=True, psks=bytes(64))  # type: ignore[arg-type]
    with pytest.raises(NoiseLocalError):
        HandshakeState("Noise_NN_25519_ChaChaPoly_BLAKE2b", initiator=True, psks=[bytes(32)])


def test_key_pair_validation() -> None:
    pair = KeyPair.generate()
    assert pair.private.hex() not in repr(pair)
    assert KeyPair.from_private(pair.private) == pair
    with pytest.raises(NoiseLocalError):
        KeyPair(private=pair.private, public=KeyPair.generate().public)
    with pytest.raises(NoiseLocalError):
        KeyPair.from_private(bytes(31))


def test_cipher_state_nonce_limit() -> None:
    """Noise §5.1: n = 2^64-1 is reserved; reaching it ends the CipherState."""
    sender = CipherState(parse_protocol_name(XX).cipher, bytes(32))
    receiver = CipherState(parse_protocol_name(XX).cipher, bytes(32))
    sender.set_nonce(MAX_NONCE - 1)
    receiver.set_nonce(MAX_NONCE - 1)
    assert receiver.decrypt_with_ad(b"", sender.encrypt_with_ad(b"", b"last")) == b"last"
    assert sender.nonce == MAX_NONCE
    with pytest.raises(NoiseLocalError):
        sender.encrypt_with_ad(b"", b"one too many")
    with pytest.raises(NoiseDecryptError):
        receiver.decrypt_with_ad(b"", bytes(32))
    with pytest.raises(NoiseLocalError):
        sender.set_nonce(MAX_NONCE + 1)
    with pytest.raises(NoiseLocalError):
        sender.set_nonce(-1)


def test_cipher_state_without_key() -> None:
    empty = CipherState(parse_protocol_name(XX).cipher)
    assert not empty.has_key()
    assert empty.encrypt_with_ad(b"ad", b"plain") == b"plain"
    assert empty.decrypt_with_ad(b"ad", b"plain") == b"plain"
    assert empty.nonce == 0
    with pytest.raises(NoiseLocalError):
        empty.rekey()
    with pytest.raises(NoiseLocalError):
        CipherState(parse_protocol_name(XX).cipher, bytes(16))


def test_rekey_keeps_the_nonce_and_must_be_mirrored() -> None:
    """Noise §11.3: Rekey changes k, not n; the two sides must rekey in step."""
    to_responder, to_initiator = handshake(*make_pair(XX))
    to_initiator.decrypt(to_responder.encrypt(b"one"))
    to_responder.rekey_send()
    assert to_responder.send_cipher.nonce == 1
    message = to_responder.encrypt(b"two")
    with pytest.raises(NoiseDecryptError):
        to_initiator.decrypt(message)  # not rekeyed yet
    to_initiator.rekey_recv()
    assert to_initiator.decrypt(message) == b"two"


# -- the public surface -------------------------------------------------------------------


def test_public_surface() -> None:
    assert sorted(node.noise.__all__) == [
        "CIPHER_FUNCTIONS",
        "CipherFunction",
        "CipherState",
        "DHFunction",
        "DH_FUNCTIONS",
        "HASH_FUNCTIONS",
        "HandshakePattern",
        "HandshakeState",
        "HashFunction",
        "KeyPair",
        "MAX_MESSAGE_LEN",
        "MessagePattern",
        "NoiseBadKeyError",
        "NoiseDecryptError",
        "NoiseError",
        "NoiseLocalError",
        "NoiseMalformedError",
        "NoiseProtocol",
        "NoiseRemoteError",
        "PATTERNS",
        "SymmetricState",
        "TransportState",
        "parse_protocol_name",
    ]
    for name in node.noise.__all__:
        assert getattr(node.noise, name) is not None


def test_error_types_say_whose_fault() -> None:
    assert issubclass(NoiseRemoteError, NoiseError)
    assert issubclass(NoiseLocalError, NoiseError)
    assert not issubclass(NoiseRemoteError, NoiseLocalError)
    assert not issubclass(NoiseLocalError, NoiseRemoteError)
    for remote in (NoiseDecryptError, NoiseBadKeyError, NoiseMalformedError):
        assert issubclass(remote, NoiseRemoteError)
    assert {NoiseDecryptError.reason, NoiseBadKeyError.reason, NoiseMalformedError.reason} == {
        "decrypt",
        "bad-key",
        "malformed",
    }
