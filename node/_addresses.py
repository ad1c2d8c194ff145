"""Small helpers for how people see addresses and peers: host:port text, short peer ids."""

from __future__ import annotations

from crdt import format_peer_id

__all__ = ["join_host_port", "short_peer_id", "split_host_port"]


def split_host_port(text: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"; ValueError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected host:port, not {text!r}")
    return host.strip("[]"), int(port)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def short_peer_id(peer_id: bytes) -> str:
    """The first 8 characters of the printed peer id, as the UI and the logs show it."""
    return format_peer_id(peer_id)[:8]
