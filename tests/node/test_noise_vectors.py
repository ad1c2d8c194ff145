"""Known-answer tests: the cacophony Noise vectors and Wycheproof X25519 / ChaCha20-Poly1305."""

from __future__ import annotations

from typing import Any

import pytest

from node.noise import (
    CIPHER_FUNCTIONS,
    DH_FUNCTIONS,
    HandshakeState,
    KeyPair,
    NoiseBadKeyError,
    NoiseDecryptError,
    NoiseLocalError,
    NoiseRemoteError,
)

from ._vectors import load, params

h = bytes.fromhex

# -- Noise: cacophony vectors -------------------------------------------------------------

_NOISE = load("noise.json")
_NOISE_CASES = None if _NOISE is None else [(v["protocol_name"], v) for v in _NOISE["vectors"]]


def test_noise_vector_file_has_all_twelve() -> None:
    if _NOISE is None:
        pytest.skip("shared/vectors/noise.json is absent")
    names = {v["protocol_name"] for v in _NOISE["vectors"]}
    assert names == {
        f"Noise_{p}_25519_ChaChaPoly_{hash_}"
        for p in ("NN", "IK", "XX")
        for hash_ in ("BLAKE2b", "BLAKE2s", "SHA256", "SHA512")
    }


def _key(vector: dict[str, Any], name: str) -> KeyPair | None:
    return KeyPair.from_private(h(vector[name])) if name in vector else None


@pytest.mark.parametrize("vector", params("noise.json", _NOISE_CASES))
def test_noise_vector(vector: dict[str, Any]) -> None:
    """Replay every handshake and transport message byte-for-byte, in both directions."""
    init_static, resp_static = _key(vector, "init_static"), _key(vector, "resp_static")
    initiator = HandshakeState(
        vector["protocol_name"],
        initiator=True,
        prologue=h(vector["init_prologue"]),
        s=init_static,
        e=_key(vector, "init_ephemeral"),
        rs=h(vector["init_remote_static"]) if "init_remote_static" in vector else None,
    )
    responder = HandshakeState(
        vector["protocol_name"],
        initiator=False,
        prologue=h(vector["resp_prologue"]),
        s=resp_static,
        e=_key(vector, "resp_ephemeral"),
    )
    n_handshake = len(initiator.protocol.pattern.messages)
    messages = vector["messages"]
    assert len(messages) > n_handshake  # the vectors always carry transport messages too

    # Handshake messages alternate, initiator first (index 0, 2, … from the initiator).
    for index, message in enumerate(messages[:n_handshake]):
        writer, reader = (initiator, responder) if index % 2 == 0 else (responder, initiator)
        assert writer.is_my_turn
        assert not reader.is_my_turn
        wire = writer.write_message(h(message["payload"]))
        assert wire.hex() == message["ciphertext"]
        assert reader.read_message(wire).hex() == message["payload"]

    assert initiator.is_finished
    assert responder.is_finished
    assert initiator.handshake_hash.hex() == vector["handshake_hash"]
    assert responder.handshake_hash.hex() == vector["handshake_hash"]
    if resp_static is not None:
        assert initiator.remote_static == resp_static.public
    if init_static is not None:
        assert responder.remote_static == init_static.public

    # Transport messages keep alternating by absolute index; each direction starts at n = 0.
    init_transport, resp_transport = initiator.split(), responder.split()
    assert init_transport.handshake_hash == resp_transport.handshake_hash
    for index, message in enumerate(messages[n_handshake:], start=n_handshake):
        sender, receiver = (
            (init_transport, resp_transport) if index % 2 == 0 else (resp_transport, init_transport)
        )
        wire = sender.encrypt(h(message["payload"]))
        assert wire.hex() == message["ciphertext"]
        assert receiver.decrypt(wire).hex() == message["payload"]


# -- Wycheproof X25519 --------------------------------------------------------------------

_X25519 = load("wycheproof_x25519_test.json")
_X25519_CASES = (
    None
    if _X25519 is None
    else [(f"tc{t['tcId']}", t) for g in _X25519["testGroups"] for t in g["tests"]]
)
_DH = DH_FUNCTIONS["25519"]


def test_x25519_file_is_complete() -> None:
    if _X25519 is None:
        pytest.skip("shared/vectors/wycheproof_x25519_test.json is absent")
    assert _X25519_CASES is not None
    assert len(_X25519_CASES) == 518


@pytest.mark.parametrize("case", params("wycheproof_x25519_test.json", _X25519_CASES))
def test_wycheproof_x25519(case: dict[str, Any]) -> None:
    assert case["result"] in ("valid", "acceptable")
    key_pair = _DH.keypair_from_private(h(case["private"]))
    public = h(case["public"])
    if case["shared"] == "00" * 32:
        # Low-order public keys (RFC 7748 §6.1): the peer's fault, never pyca's ValueError.
        assert "ZeroSharedSecret" in case["flags"]
        with pytest.raises(NoiseBadKeyError):
            _DH.dh(key_pair, public)
        with pytest.raises(NoiseBadKeyError):
            _DH.check_public(public)
    else:
        assert _DH.dh(key_pair, public).hex() == case["shared"]
        _DH.check_public(public)  # a usable key passes the arrival check


# -- Wycheproof ChaCha20-Poly1305 -----------------------------------------------------------

_AEAD = load("wycheproof_chacha20_poly1305_test.json")
_AEAD_CASES = (
    None
    if _AEAD is None
    else [(f"tc{t['tcId']}", (g["ivSize"], t)) for g in _AEAD["testGroups"] for t in g["tests"]]
)
_CHACHA = CIPHER_FUNCTIONS["ChaChaPoly"]


def test_chacha_file_is_complete() -> None:
    if _AEAD is None:
        pytest.skip("shared/vectors/wycheproof_chacha20_poly1305_test.json is absent")
    assert _AEAD_CASES is not None
    assert len(_AEAD_CASES) == 325


@pytest.mark.parametrize("case", params("wycheproof_chacha20_poly1305_test.json", _AEAD_CASES))
def test_wycheproof_chacha20_poly1305(case: tuple[int, dict[str, Any]]) -> None:
    iv_bits, test = case
    key, iv, aad, msg = h(test["key"]), h(test["iv"]), h(test["aad"]), h(test["msg"])
    sealed = h(test["ct"]) + h(test["tag"])
    if iv_bits != 96:
        # CipherState only ever builds 96-bit nonces (Noise §12.3); any other size reaching
        # the raw AEAD is our own bug, so it is the local error, not a remote one.
        assert test["result"] == "invalid"
        with pytest.raises(NoiseLocalError):
            _CHACHA.open(key, iv, aad, sealed)
        return
    if test["result"] == "valid":
        assert _CHACHA.seal(key, iv, aad, msg) == sealed
        assert _CHACHA.open(key, iv, aad, sealed) == msg
        if iv[:4] == bytes(4):
            # Noise §12.3 nonce layout: 32 zero bits, then n as 64-bit little-endian.
            n = int.from_bytes(iv[4:], "little")
            assert _CHACHA.encrypt(key, n, aad, msg) == sealed
            assert _CHACHA.decrypt(key, n, aad, sealed) == msg
    else:
        with pytest.raises(NoiseRemoteError) as info:
            _CHACHA.open(key, iv, aad, sealed)
        assert isinstance(info.value, NoiseDecryptError)
