"""trio helpers that crdt, dht and node share: how blocking work runs, nurseries whose
lone error comes out as itself, and the shape of a signature check.

This package imports nothing of ours and holds no protocol logic; it exists so that each
of these helpers is defined once in the whole tree (crdt and dht never import node).
"""

from ._blocking import INLINE, THREADED, Blocking, run_inline, run_threaded
from ._nursery import lone_error, open_unwrapping_nursery
from ._signatures import SignatureCheck

__all__ = [
    "INLINE",
    "THREADED",
    "Blocking",
    "SignatureCheck",
    "lone_error",
    "open_unwrapping_nursery",
    "run_inline",
    "run_threaded",
]
