"""Noise Protocol Framework (revision 34), sans-IO, on pyca/cryptography primitives.

rumor's links run ``Noise_XX_25519_ChaChaPoly_BLAKE2b``; any pattern of Noise §7.4/§7.5
with ``pskN`` modifiers, 25519, ChaChaPoly/AESGCM and SHA256/SHA512/BLAKE2s/BLAKE2b works.
Bytes in, bytes out: this package never touches a socket, a clock or a seeded RNG.
"""

from ._errors import (
    NoiseBadKeyError,
    NoiseDecryptError,
    NoiseError,
    NoiseLocalError,
    NoiseMalformedError,
    NoiseRemoteError,
)
from ._handshake import MAX_MESSAGE_LEN, HandshakeState, TransportState
from ._patterns import (
    PATTERNS,
    HandshakePattern,
    MessagePattern,
    NoiseProtocol,
    parse_protocol_name,
)
from ._primitives import (
    CIPHER_FUNCTIONS,
    DH_FUNCTIONS,
    HASH_FUNCTIONS,
    CipherFunction,
    DHFunction,
    HashFunction,
    KeyPair,
)
from ._state import CipherState, SymmetricState

__all__ = [
    "CIPHER_FUNCTIONS",
    "DH_FUNCTIONS",
    "HASH_FUNCTIONS",
    "MAX_MESSAGE_LEN",
    "PATTERNS",
    "CipherFunction",
    "CipherState",
    "DHFunction",
    "HandshakePattern",
    "HandshakeState",
    "HashFunction",
    "KeyPair",
    "MessagePattern",
    "NoiseBadKeyError",
    "NoiseDecryptError",
    "NoiseError",
    "NoiseLocalError",
    "NoiseMalformedError",
    "NoiseProtocol",
    "NoiseRemoteError",
    "SymmetricState",
    "TransportState",
    "parse_protocol_name",
]
