"""Kademlia over UDP: a sans-IO routing and lookup core with a thin trio driver."""
