"""The Noise crypto functions (Noise §4, §12) as thin wrappers over pyca/cryptography and hashlib.

Each wrapper turns the primitive's own failures into this package's error types: pyca's
``ValueError`` for an all-zero X25519 output becomes :class:`NoiseBadKeyError`, its
``InvalidTag`` becomes :class:`NoiseDecryptError`. Malformed *arguments* (a key of the
wrong length, a nonce that is not 96 bits) are the caller's bug: :class:`NoiseLocalError`.

This module must never implement a primitive itself, read the clock, or do any IO. The only
randomness is :meth:`DHFunction.generate_keypair`, which asks the OS CSPRNG through pyca:
a seeded ``random.Random`` must never make keys.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from ._errors import NoiseBadKeyError, NoiseDecryptError, NoiseLocalError

__all__ = [
    "CIPHER_FUNCTIONS",
    "DH_FUNCTIONS",
    "HASH_FUNCTIONS",
    "KEY_LEN",
    "MAX_NONCE",
    "TAG_LEN",
    "X25519DH",
    "AESGCMCipher",
    "ChaChaPolyCipher",
    "CipherFunction",
    "DHFunction",
    "HashFunction",
    "KeyPair",
]

KEY_LEN: Final = 32
"""Cipher keys are 32 bytes (Noise §4.2)."""

TAG_LEN: Final = 16
"""Every AEAD ciphertext is 16 bytes longer than its plaintext (Noise §4.2)."""

MAX_NONCE: Final = 2**64 - 1
"""The reserved nonce: never used for a message, only by REKEY (Noise §4.2, §5.1)."""

_ZEROS32: Final = bytes(32)


def _check_len(what: str, value: bytes, length: int) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise NoiseLocalError(f"{what} must be bytes, not {type(value).__name__}")
    if len(value) != length:
        raise NoiseLocalError(f"{what} must be {length} bytes, got {len(value)}")


def _raw_private(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair as raw bytes; the private half is kept out of ``repr``."""

    private: bytes = field(repr=False)
    public: bytes

    def __post_init__(self) -> None:
        _check_len("private key", self.private, 32)
        _check_len("public key", self.public, 32)
        derived = _raw_public(X25519PrivateKey.from_private_bytes(bytes(self.private)).public_key())
        if not hmac.compare_digest(derived, bytes(self.public)):
            raise NoiseLocalError("public key does not belong to the private key")

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        """The key pair whose private key is ``private`` (32 raw bytes)."""
        _check_len("private key", private, 32)
        key = X25519PrivateKey.from_private_bytes(bytes(private))
        return cls(private=bytes(private), public=_raw_public(key.public_key()))

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh key pair from the OS CSPRNG (Noise §4.1 GENERATE_KEYPAIR)."""
        key = X25519PrivateKey.generate()
        return cls(private=_raw_private(key), public=_raw_public(key.public_key()))


class DHFunction(ABC):
    """A Noise DH function (Noise §4.1)."""

    name: ClassVar[str]
    dhlen: ClassVar[int]

    @abstractmethod
    def generate_keypair(self) -> KeyPair:
        """GENERATE_KEYPAIR(): a new key pair from a CSPRNG."""

    @abstractmethod
    def keypair_from_private(self, private: bytes) -> KeyPair:
        """The key pair of a given private key (for fixed test-vector keys)."""

    @abstractmethod
    def dh(self, key_pair: KeyPair, public_key: bytes) -> bytes:
        """DH(key_pair, public_key); raises :class:`NoiseBadKeyError` for an invalid key."""

    @abstractmethod
    def check_public(self, public_key: bytes) -> None:
        """Raise :class:`NoiseBadKeyError` if ``public_key`` would make every DH fail."""


# A fixed clamped scalar for check_public: X25519 clamps every scalar to a multiple of the
# cofactor 8, so the output is all zeros for one private key exactly when it is for all of
# them, i.e. when the point has small order (RFC 7748 §6.1). One trial DH tells us.
_PROBE: Final = X25519PrivateKey.from_private_bytes(bytes([0x40] + [0x11] * 30 + [0x40]))


class X25519DH(DHFunction):
    """Curve25519 (Noise §12.1), via pyca's X25519."""

    name = "25519"
    dhlen = 32

    def generate_keypair(self) -> KeyPair:
        return KeyPair.generate()

    def keypair_from_private(self, private: bytes) -> KeyPair:
        return KeyPair.from_private(private)

    def dh(self, key_pair: KeyPair, public_key: bytes) -> bytes:
        # Noise §4.1: invalid public keys are handled "by signaling an error to the caller".
        _check_len("public key", public_key, self.dhlen)
        private = X25519PrivateKey.from_private_bytes(bytes(key_pair.private))
        try:
            return private.exchange(X25519PublicKey.from_public_bytes(bytes(public_key)))
        except ValueError as exc:  # pyca: all-zero shared secret, i.e. a low-order point
            raise NoiseBadKeyError("X25519 public key has low order (all-zero DH output)") from exc

    def check_public(self, public_key: bytes) -> None:
        self.dh(_PROBE_PAIR, public_key)


_PROBE_PAIR: Final = KeyPair(private=_raw_private(_PROBE), public=_raw_public(_PROBE.public_key()))


class CipherFunction(ABC):
    """A Noise AEAD cipher function (Noise §4.2) with a 32-byte key and a 64-bit counter."""

    name: ClassVar[str]

    @abstractmethod
    def nonce(self, n: int) -> bytes:
        """The 96-bit AEAD nonce that encodes the 64-bit counter ``n``."""

    @abstractmethod
    def _aead(self, key: bytes) -> ChaCha20Poly1305 | AESGCM: ...

    def seal(self, key: bytes, nonce: bytes, ad: bytes, plaintext: bytes) -> bytes:
        """The raw AEAD: encrypt ``plaintext`` under a 12-byte ``nonce``."""
        _check_len("cipher key", key, KEY_LEN)
        _check_len("nonce", nonce, 12)
        return self._aead(bytes(key)).encrypt(bytes(nonce), bytes(plaintext), bytes(ad))

    def open(self, key: bytes, nonce: bytes, ad: bytes, ciphertext: bytes) -> bytes:
        """The raw AEAD: decrypt and verify; a bad tag is :class:`NoiseDecryptError`."""
        _check_len("cipher key", key, KEY_LEN)
        _check_len("nonce", nonce, 12)
        if len(ciphertext) < TAG_LEN:
            raise NoiseDecryptError(f"ciphertext of {len(ciphertext)} bytes has no room for a tag")
        try:
            return self._aead(bytes(key)).decrypt(bytes(nonce), bytes(ciphertext), bytes(ad))
        except InvalidTag as exc:
            raise NoiseDecryptError("authentication tag did not verify") from exc

    def encrypt(self, k: bytes, n: int, ad: bytes, plaintext: bytes) -> bytes:
        """ENCRYPT(k, n, ad, plaintext) (Noise §4.2)."""
        return self.seal(k, self.nonce(n), ad, plaintext)

    def decrypt(self, k: bytes, n: int, ad: bytes, ciphertext: bytes) -> bytes:
        """DECRYPT(k, n, ad, ciphertext) (Noise §4.2)."""
        return self.open(k, self.nonce(n), ad, ciphertext)

    def rekey(self, k: bytes) -> bytes:
        """REKEY(k): "ENCRYPT(k, maxnonce, zerolen, zeros)" truncated to 32 bytes (Noise §4.2)."""
        return self.encrypt(k, MAX_NONCE, b"", _ZEROS32)[:KEY_LEN]


class ChaChaPolyCipher(CipherFunction):
    """ChaCha20-Poly1305 (Noise §12.3)."""

    name = "ChaChaPoly"

    def nonce(self, n: int) -> bytes:
        # Noise §12.3: "32 bits of zeros followed by little-endian encoding of n".
        return b"\x00\x00\x00\x00" + struct.pack("<Q", n)

    def _aead(self, key: bytes) -> ChaCha20Poly1305:
        return ChaCha20Poly1305(key)


class AESGCMCipher(CipherFunction):
    """AES-256-GCM (Noise §12.4)."""

    name = "AESGCM"

    def nonce(self, n: int) -> bytes:
        # Noise §12.4: "32 bits of zeros followed by big-endian encoding of n".
        return b"\x00\x00\x00\x00" + struct.pack(">Q", n)

    def _aead(self, key: bytes) -> AESGCM:
        return AESGCM(key)


@dataclass(frozen=True)
class HashFunction:
    """A Noise hash function with HMAC and HKDF built on it (Noise §4.3, §12.5-§12.8)."""

    name: str
    hashlib_name: str
    hashlen: int
    blocklen: int

    def hash(self, data: bytes) -> bytes:
        """HASH(data)."""
        return hashlib.new(self.hashlib_name, bytes(data)).digest()

    def hmac(self, key: bytes, data: bytes) -> bytes:
        """HMAC-HASH(key, data) as in RFC 2104 (Noise §4.3)."""
        return hmac.digest(bytes(key), bytes(data), self.hashlib_name)

    def hkdf(
        self, chaining_key: bytes, input_key_material: bytes, num_outputs: int
    ) -> tuple[bytes, ...]:
        """HKDF(chaining_key, input_key_material, num_outputs) exactly as Noise §4.3 defines it."""
        if num_outputs not in (2, 3):
            raise NoiseLocalError(f"HKDF makes 2 or 3 outputs, not {num_outputs}")
        # Noise §4.3: "Sets temp_key = HMAC-HASH(chaining_key, input_key_material)."
        temp_key = self.hmac(chaining_key, input_key_material)
        # "Sets output1 = HMAC-HASH(temp_key, byte(0x01))."
        output1 = self.hmac(temp_key, b"\x01")
        # "Sets output2 = HMAC-HASH(temp_key, output1 || byte(0x02))."
        output2 = self.hmac(temp_key, output1 + b"\x02")
        if num_outputs == 2:
            return output1, output2
        # "Sets output3 = HMAC-HASH(temp_key, output2 || byte(0x03))."
        output3 = self.hmac(temp_key, output2 + b"\x03")
        return output1, output2, output3


DH_FUNCTIONS: Final[dict[str, DHFunction]] = {"25519": X25519DH()}
CIPHER_FUNCTIONS: Final[dict[str, CipherFunction]] = {
    "ChaChaPoly": ChaChaPolyCipher(),
    "AESGCM": AESGCMCipher(),
}
HASH_FUNCTIONS: Final[dict[str, HashFunction]] = {
    # Noise §12.5-§12.8: HASHLEN and BLOCKLEN of each.
    "SHA256": HashFunction("SHA256", "sha256", 32, 64),
    "SHA512": HashFunction("SHA512", "sha512", 64, 128),
    "BLAKE2s": HashFunction("BLAKE2s", "blake2s", 32, 64),
    "BLAKE2b": HashFunction("BLAKE2b", "blake2b", 64, 128),
}
