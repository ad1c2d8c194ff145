"""The peer: identity, links, gossip and sync, the Node API and the command line."""
