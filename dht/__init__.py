"""Kademlia over UDP: a sans-IO routing and lookup core with a thin trio driver.

Speaks the wire format of the `kademlia` package (so its nodes are full peers) plus two
RPCs of ours, `get_peers` and `announce`, for signed peer records.  See the README.

This package never imports `node` or `crdt`; of our own code it uses `rumor_runtime` only.
"""

from ._config import DHTConfig
from ._driver import DatagramTransport, DHTHealth, DHTNode, UDPTransport
from ._errors import DHTError, DropReason, LocalProtocolError, RecordError, RemoteProtocolError
from ._events import (
    AnnounceResult,
    BootstrapFailed,
    BootstrapRecovered,
    BootstrapResult,
    DatagramDropped,
    DropSummary,
    Event,
    GetPeersResult,
    GetResult,
    LookupResult,
    Op,
    OperationDone,
    SetResult,
)
from ._ids import (
    Address,
    Contact,
    canonical_host,
    distance,
    key_digest,
    node_id_from_public_key,
)
from ._lookup import Lookup, LookupStats
from ._protocol import DHTProtocol
from ._records import PeerRecord
from ._routing import RoutingTable
from ._sim import LinkSpec, SimNetwork, SimSocket, SimSwarm
from ._storage import StorageLimits, ValueStore
from ._wire import MAX_DATAGRAM, Value

__all__ = [
    "MAX_DATAGRAM",
    "Address",
    "AnnounceResult",
    "BootstrapFailed",
    "BootstrapRecovered",
    "BootstrapResult",
    "Contact",
    "DHTConfig",
    "DHTError",
    "DHTHealth",
    "DHTNode",
    "DHTProtocol",
    "DatagramDropped",
    "DatagramTransport",
    "DropReason",
    "DropSummary",
    "Event",
    "GetPeersResult",
    "GetResult",
    "LinkSpec",
    "LocalProtocolError",
    "Lookup",
    "LookupResult",
    "LookupStats",
    "Op",
    "OperationDone",
    "PeerRecord",
    "RecordError",
    "RemoteProtocolError",
    "RoutingTable",
    "SetResult",
    "SimNetwork",
    "SimSocket",
    "SimSwarm",
    "StorageLimits",
    "UDPTransport",
    "Value",
    "ValueStore",
    "canonical_host",
    "distance",
    "key_digest",
    "node_id_from_public_key",
]
