"""Simulated networks for whole nodes in virtual time: what tests, benchmarks and the swarm
tooling run rumor on.

`SimNetwork` supplies a node's environment (stream and datagram transports, inline
blocking work) so that the same `Node` runs unchanged under
`trio.testing.MockClock(autojump_threshold=0)`. Nothing here is used by a node serving
real peers, and nothing here may read the wall clock or an unseeded random generator.
"""

from ._network import SimNetwork

__all__ = ["SimNetwork"]
