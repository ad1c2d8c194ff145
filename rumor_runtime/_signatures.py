"""`SignatureCheck`: the shape of an Ed25519 check that crdt, dht and node can be handed.

Every signature check in the tree (ops, DHT peer records, room address records) takes
``(public_key, signature, message)`` and answers True or False. A real node leaves the
hook unset and each part verifies the way it always does; a simulated network hands every
node one shared check that remembers verdicts (`node.sim`), since a verdict is a pure
function of those three byte strings and a simulation verifies each of them at every node.

This module only names the type; it verifies nothing.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["SignatureCheck"]

SignatureCheck = Callable[[bytes, bytes, bytes], bool]
"""``check(public_key, signature, message)``: True if `signature` is `public_key`'s Ed25519
signature of `message`; False for a bad signature or a malformed key, never an error."""
