"""Noise error types, split by whose fault it was.

A :class:`NoiseRemoteError` is anything the peer (or an attacker on the path) could have
caused: a forged or corrupted tag, a low-order public key, a message of the wrong length.
The link layer drops the frame, counts it and closes the link; it is never a bug here.

A :class:`NoiseLocalError` is misuse by the caller: writing when it is the other side's
turn, using a finished or failed handshake, a bad protocol name, a missing key. It is a
bug in our own code and should be raised loudly.

This module must never import anything but the standard library.
"""

from __future__ import annotations

__all__ = [
    "NoiseBadKeyError",
    "NoiseDecryptError",
    "NoiseError",
    "NoiseLocalError",
    "NoiseMalformedError",
    "NoiseRemoteError",
]


class NoiseError(Exception):
    """Base class of every error this package raises on purpose."""


class NoiseLocalError(NoiseError):
    """The caller misused the API (wrong turn, finished handshake, bad configuration)."""


class NoiseRemoteError(NoiseError):
    """The peer sent something we must reject; ``reason`` is a short machine-readable tag."""

    reason: str = "remote"


class NoiseDecryptError(NoiseRemoteError):
    """An AEAD tag did not verify: the message was forged, corrupted or keyed differently."""

    reason = "decrypt"


class NoiseBadKeyError(NoiseRemoteError):
    """The peer's public key is invalid (a low-order X25519 point, RFC 7748 §6.1)."""

    reason = "bad-key"


class NoiseMalformedError(NoiseRemoteError):
    """The message has the wrong length or shape for where the handshake is."""

    reason = "malformed"
