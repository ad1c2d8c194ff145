"""Small helpers for how people see addresses and peers: host:port text, short peer ids.

Addresses come from people (the command line, config files, invites), so they are read
strictly: `host:port` or `[v6]:port`, the port in ASCII digits, the host an IP literal or
a syntactically valid DNS name, nothing else (no scheme, no path). The errors are
`ValueError`s with a one-line message for people; callers say which address it was.
This module never resolves a name or touches the network.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from crdt import format_peer_id

__all__ = [
    "is_dns_name",
    "is_ip_literal",
    "join_host_port",
    "parse_address",
    "short_peer_id",
    "split_host_port",
]

MAX_DNS_NAME: Final = 253  # RFC 1035 §2.3.4 (255 octets on the wire: 253 characters)
# RFC 1123 §2.1: letters, digits and hyphens; 1-63 characters; no hyphen at either end.
_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_PORT: Final = re.compile(r"[0-9]{1,5}")  # ASCII digits only: str.isdigit() takes '²' and '١'


def split_host_port(text: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"; ValueError otherwise.

    The port is 0-65535 in ASCII digits; an IPv6 host must be in brackets. The host is
    not checked further (it may be empty, for a wildcard): see `parse_address`."""
    if "/" in text:
        raise ValueError(f"expected host:port, with no scheme or path, not {_shown(text)}")
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"expected host:port, not {_shown(text)}")
    if not _PORT.fullmatch(port):
        raise ValueError(f"the port must be a number 0-65535, not {_shown(port)}")
    if int(port) > 65535:
        raise ValueError(f"port out of range in {_shown(text)}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host:
            raise ValueError(f"no host between the brackets in {_shown(text)}")
    elif ":" in host:
        raise ValueError(f"write an IPv6 host in brackets, as [{host}]:{port}")
    elif "[" in host or "]" in host:
        raise ValueError(f"unbalanced brackets in {_shown(text)}")
    return host, int(port)


def parse_address(text: str, *, ip_only: bool = False, allow_zero: bool = True) -> tuple[str, int]:
    """("host", port) from a host:port that a peer could dial (or we could bind).

    The host is an IP literal (IPv6 in brackets) or, unless `ip_only`, a syntactically
    valid DNS name; port 0 ("any free port") only if `allow_zero`. ValueError otherwise."""
    host, port = split_host_port(text)
    if port == 0 and not allow_zero:
        raise ValueError(f"port out of range in {_shown(text)} (0 is not a port to dial)")
    bracketed = text.startswith("[")
    if bracketed:
        if not (is_ip_literal(host) and ":" in host):
            raise ValueError(f"not an IPv6 address between the brackets: {_shown(host)}")
    elif ip_only and not is_ip_literal(host):
        raise ValueError(
            f"the host must be an IP address (such as 0.0.0.0, 127.0.0.1 or [::]), "
            f"not {_shown(host)}"
        )
    elif not (is_ip_literal(host) or is_dns_name(host)):
        raise ValueError(f"not an IP address or a valid host name: {_shown(host)}")
    return host, port


def is_ip_literal(host: str) -> bool:
    """An IPv4 address in dotted decimal or an IPv6 address (no brackets, no zone id)."""
    if not host.isascii() or "%" in host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_dns_name(host: str) -> bool:
    """A syntactically valid DNS name (RFC 1123 §2.1), with or without a final dot.

    Its last label is not all digits (RFC 3696 §2): "999.1.1.1" is a bad IP address, not
    a name to look up."""
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > MAX_DNS_NAME or not name.isascii():
        return False
    labels = name.split(".")
    return all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def short_peer_id(peer_id: bytes) -> str:
    """The first 8 characters of the printed peer id, as the UI and the logs show it."""
    return format_peer_id(peer_id)[:8]


def _shown(text: str) -> str:
    """`text` quoted for a one-line message, escapes and all, cut if long."""
    return repr(text) if len(text) <= 60 else repr(text[:57]) + "..."
