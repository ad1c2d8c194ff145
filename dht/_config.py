"""`DHTConfig`: the tunables of one DHT node, checked when built.

Plain data: this module never reads a clock, draws a random number or touches IO.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._errors import LocalProtocolError
from ._storage import StorageLimits

__all__ = ["DHTConfig"]


@dataclass(frozen=True, slots=True)
class DHTConfig:
    """Tunables of one node.  k and alpha are the paper's; the rest are operator limits."""

    k: int = 20
    alpha: int = 3
    # Each RPC is sent up to `rpc_attempts` times, `rpc_timeout` apart, before the peer
    # counts as failed: 6 x 0.8 s is within the package's single 5 s wait, and with 10%
    # datagram loss a live peer still fails only once in ~20,000 RPCs (0.19 ** 6).
    rpc_timeout: float = 0.8
    rpc_attempts: int = 6
    refresh_interval: float = 3600.0
    maintenance_interval: float = 60.0
    token_rotation: float = 300.0
    announce_interval: float = 600.0
    max_fails: int = 2
    # Seconds a contact counts as alive after we last heard from it: a full bucket pings
    # its least-recently seen contact for a newcomer only once that is older than this.
    fresh_for: float = 60.0
    # Routing-table contacts per IP address (loopback exempt); None for no limit.
    max_contacts_per_host: int | None = 8
    # Per source host: sustained requests per second and burst.
    rate_limit: float = 50.0
    rate_burst: float = 200.0
    max_pending: int = 4096
    # Announced records must name only the announcer's own IP (see `Server._announce`).
    require_address_match: bool = True
    limits: StorageLimits = field(default_factory=StorageLimits)
    # A node given bootstrap addresses that still has no contact this long after it
    # began reports the bootstrap as failed (a `BootstrapFailed` event), until one comes.
    bootstrap_grace: float = 30.0
    # Dropped input is summed up by reason in one `DropSummary` at most this often.
    drop_summary_interval: float = 60.0

    def __post_init__(self) -> None:
        if self.k < 1 or self.alpha < 1 or self.rpc_timeout <= 0 or self.rpc_attempts < 1:
            raise LocalProtocolError("k, alpha, rpc_timeout and rpc_attempts must be positive")
        if self.bootstrap_grace <= 0 or self.drop_summary_interval <= 0:
            raise LocalProtocolError("bootstrap_grace and drop_summary_interval must be positive")
