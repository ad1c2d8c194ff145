"""A node's Ed25519 identity: key pair, key file, peer id and its printable form.

The peer id is the 32-byte public key; people see it as lowercase base32 without padding.
The key file is PKCS#8 PEM, written atomically and readable by its owner only.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

__all__ = ["Identity", "IdentityError", "format_peer_id", "parse_peer_id", "verify_signature"]

PEER_ID_BYTES = 32
SIGNATURE_BYTES = 64


class IdentityError(Exception):
    """A key file or printed peer id that cannot be used; the message is one line for people."""


def format_peer_id(peer_id: bytes) -> str:
    """The printable form of a peer id: lowercase base32, no padding (52 characters)."""
    if len(peer_id) != PEER_ID_BYTES:
        raise ValueError(f"a peer id is {PEER_ID_BYTES} bytes, not {len(peer_id)}")
    return base64.b32encode(peer_id).decode("ascii").rstrip("=").lower()


def parse_peer_id(text: str) -> bytes:
    """The peer id printed by `format_peer_id`; raises IdentityError on anything else."""
    cleaned = text.strip().upper()
    padded = cleaned + "=" * (-len(cleaned) % 8)
    try:
        raw = base64.b32decode(padded)
    except (binascii.Error, ValueError):
        raise IdentityError(f"not a peer id: {text!r}") from None
    if len(raw) != PEER_ID_BYTES or format_peer_id(raw) != cleaned.lower():
        raise IdentityError(f"not a peer id: {text!r}")
    return raw


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True if `signature` is `public_key`'s Ed25519 signature of `message`."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class Identity:
    """An Ed25519 key pair. `peer_id` is the public key; `sign` signs with the private key."""

    __slots__ = ("_private", "peer_id")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.peer_id: bytes = private_key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """The identity whose private key is the 32-byte `seed` (for tests and recovery)."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The key itself, for other protocols that sign as this node (DHT peer records)."""
        return self._private

    @property
    def peer_id_text(self) -> str:
        return format_peer_id(self.peer_id)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key file atomically with mode 0600; never replaces an existing file."""
        target = Path(path)
        if target.exists():
            raise IdentityError(f"{target} already exists; refusing to overwrite an identity")
        pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".identity-", dir=target.parent)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, pem)
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.link(tmp, target)  # fails if another process created it meanwhile
        except FileExistsError:
            raise IdentityError(
                f"{target} already exists; refusing to overwrite an identity"
            ) from None
        finally:
            if fd >= 0:
                os.close(fd)
            os.unlink(tmp)
        _fsync_dir(target.parent)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        """Read a key file written by `save`; a bad or exposed file raises IdentityError."""
        source = Path(path)
        try:
            mode = source.stat().st_mode
            data = source.read_bytes()
        except FileNotFoundError:
            raise IdentityError(f"no identity at {source}") from None
        except OSError as exc:
            raise IdentityError(f"cannot read identity {source}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise IdentityError(
                f"identity {source} is accessible by other users; run: chmod 600 {source}"
            )
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise IdentityError(f"{source} is not an unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"{source} holds a key that is not Ed25519")
        return cls(key)

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str], *, seed: bytes | None = None) -> Identity:
        """The identity saved at `path`, or a new one saved there: from `seed` (32 random
        bytes the caller drew, as a simulation does from its seed) or freshly generated."""
        if Path(path).exists():
            return cls.load(path)
        identity = cls.from_seed(seed) if seed is not None else cls.generate()
        identity.save(path)
        return identity

    def __repr__(self) -> str:
        return f"Identity({self.peer_id_text[:8]})"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
