"""CipherState and SymmetricState (Noise §5.1, §5.2): the symmetric half of a handshake.

These objects hold keys and counters and change as they are used, like the spec's own
objects; they are not frozen. Every method is pure computation on bytes: no IO, no clock,
no randomness. Failures follow the package rule: what a peer could cause is a
:class:`NoiseRemoteError`, what only our caller could cause is a :class:`NoiseLocalError`.
"""

from __future__ import annotations

from ._errors import NoiseDecryptError, NoiseLocalError
from ._primitives import KEY_LEN, MAX_NONCE, CipherFunction, HashFunction

__all__ = ["CipherState", "SymmetricState"]


def _as_bytes(what: str, value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise NoiseLocalError(f"{what} must be bytes, not {type(value).__name__}")
    return bytes(value)


class CipherState:
    """A key ``k`` (maybe empty) and a 64-bit nonce ``n`` (Noise §5.1)."""

    __slots__ = ("_cipher", "_k", "_n")

    def __init__(self, cipher: CipherFunction, key: bytes | None = None) -> None:
        self._cipher = cipher
        self._k: bytes | None = None
        self._n = 0
        self.initialize_key(key)

    def __repr__(self) -> str:
        return f"CipherState({self._cipher.name}, has_key={self.has_key()}, n={self._n})"

    @property
    def cipher(self) -> CipherFunction:
        """The cipher function this state encrypts with."""
        return self._cipher

    @property
    def nonce(self) -> int:
        """The nonce the next encryption or decryption will use."""
        return self._n

    def initialize_key(self, key: bytes | None) -> None:
        """InitializeKey(key): set ``k`` (``None`` means empty) and ``n = 0``."""
        if key is not None:
            key = _as_bytes("cipher key", key)
            if len(key) != KEY_LEN:
                raise NoiseLocalError(f"cipher key must be {KEY_LEN} bytes, got {len(key)}")
        self._k = key
        self._n = 0

    def has_key(self) -> bool:
        """HasKey(): whether ``k`` is non-empty."""
        return self._k is not None

    def set_nonce(self, nonce: int) -> None:
        """SetNonce(nonce), for out-of-order transports that carry ``n`` themselves."""
        if not isinstance(nonce, int) or not 0 <= nonce <= MAX_NONCE:
            raise NoiseLocalError(f"nonce must be an integer in [0, 2**64 - 1], got {nonce!r}")
        self._n = nonce

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        """EncryptWithAd(ad, plaintext); passes plaintext through while ``k`` is empty."""
        ad = _as_bytes("associated data", ad)
        plaintext = _as_bytes("plaintext", plaintext)
        if self._k is None:
            return plaintext
        # Noise §5.1: "If incrementing n results in 2^64-1, then any further EncryptWithAd()
        # or DecryptWithAd() calls will signal an error to the caller."
        if self._n >= MAX_NONCE:
            raise NoiseLocalError("nonce space exhausted: this CipherState can send no more")
        ciphertext = self._cipher.encrypt(self._k, self._n, ad, plaintext)
        self._n += 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """DecryptWithAd(ad, ciphertext); a bad tag raises :class:`NoiseDecryptError`."""
        ad = _as_bytes("associated data", ad)
        ciphertext = _as_bytes("ciphertext", ciphertext)
        if self._k is None:
            return ciphertext
        if self._n >= MAX_NONCE:
            # The peer sent more messages than the nonce space allows (Noise §5.1).
            raise NoiseDecryptError("nonce space exhausted: the peer sent too many messages")
        # Noise §5.1: "If an authentication failure occurs in DECRYPT() then n is not
        # incremented and an error is signaled to the caller." (open() raises first.)
        plaintext = self._cipher.decrypt(self._k, self._n, ad, ciphertext)
        self._n += 1
        return plaintext

    def rekey(self) -> None:
        """Rekey(): ``k = REKEY(k)``; ``n`` is left alone (Noise §4.2, §11.3)."""
        if self._k is None:
            raise NoiseLocalError("cannot rekey a CipherState that has no key")
        self._k = self._cipher.rekey(self._k)


class SymmetricState:
    """The chaining key ``ck``, the handshake hash ``h`` and a CipherState (Noise §5.2)."""

    __slots__ = ("_ck", "_cs", "_h", "_hash")

    def __init__(self, protocol_name: bytes, cipher: CipherFunction, hash_: HashFunction) -> None:
        """InitializeSymmetric(protocol_name)."""
        protocol_name = _as_bytes("protocol name", protocol_name)
        self._hash = hash_
        # Noise §5.2: "If protocol_name is less than or equal to HASHLEN bytes in length, sets
        # h equal to protocol_name with zero bytes appended to make HASHLEN bytes. Otherwise
        # sets h = HASH(protocol_name)."
        if len(protocol_name) <= hash_.hashlen:
            self._h = protocol_name.ljust(hash_.hashlen, b"\x00")
        else:
            self._h = hash_.hash(protocol_name)
        self._ck = self._h  # "Sets ck = h."
        self._cs = CipherState(cipher)  # "Calls InitializeKey(empty)."

    @property
    def cipher_state(self) -> CipherState:
        """The CipherState the handshake encrypts with."""
        return self._cs

    def _truncate(self, temp_k: bytes) -> bytes:
        # Noise §5.2: "If HASHLEN is 64, then truncates temp_k to 32 bytes."
        return temp_k[:KEY_LEN]

    def mix_key(self, input_key_material: bytes) -> None:
        """MixKey(input_key_material)."""
        self._ck, temp_k = self._hash.hkdf(self._ck, input_key_material, 2)
        self._cs.initialize_key(self._truncate(temp_k))

    def mix_hash(self, data: bytes) -> None:
        """MixHash(data): ``h = HASH(h || data)``."""
        self._h = self._hash.hash(self._h + bytes(data))

    def mix_key_and_hash(self, input_key_material: bytes) -> None:
        """MixKeyAndHash(input_key_material), used by the ``psk`` token (Noise §9.2)."""
        self._ck, temp_h, temp_k = self._hash.hkdf(self._ck, input_key_material, 3)
        self.mix_hash(temp_h)
        self._cs.initialize_key(self._truncate(temp_k))

    def get_handshake_hash(self) -> bytes:
        """GetHandshakeHash(): the current ``h``."""
        return self._h

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """EncryptAndHash(plaintext): encrypt with ``h`` as AD, then mix the ciphertext in."""
        ciphertext = self._cs.encrypt_with_ad(self._h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """DecryptAndHash(ciphertext): decrypt with ``h`` as AD, then mix the ciphertext in."""
        plaintext = self._cs.decrypt_with_ad(self._h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """Split(): the two transport CipherStates, initiator→responder first."""
        # Noise §5.2: "Sets temp_k1, temp_k2 = HKDF(ck, zerolen, 2)."
        temp_k1, temp_k2 = self._hash.hkdf(self._ck, b"", 2)
        cipher = self._cs.cipher
        return (
            CipherState(cipher, self._truncate(temp_k1)),
            CipherState(cipher, self._truncate(temp_k2)),
        )
