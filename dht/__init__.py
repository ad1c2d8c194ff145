"""Kademlia over UDP: a sans-IO routing and lookup core with a thin trio driver.

Speaks the wire format of the `kademlia` package (so its nodes are full peers) plus two
RPCs of ours, `get_peers` and `announce`, for signed peer records.  See the README.
"""

from ._driver import DatagramTransport, DHTNode, UDPTransport
from ._errors import DHTError, LocalProtocolError, RecordError, RemoteProtocolError
from ._ids import (
    Address,
    Contact,
    canonical_host,
    distance,
    key_digest,
    node_id_from_public_key,
)
from ._lookup import Lookup, LookupStats
from ._protocol import (
    AnnounceResult,
    BootstrapResult,
    DatagramDropped,
    DHTConfig,
    DHTProtocol,
    GetPeersResult,
    GetResult,
    LookupResult,
    OperationDone,
    SetResult,
)
from ._records import PeerRecord
from ._routing import RoutingTable
from ._sim import LinkSpec, SimNetwork, SimSocket, SimSwarm
from ._storage import StorageLimits, ValueStore
from ._wire import MAX_DATAGRAM, Value

__all__ = [
    "MAX_DATAGRAM",
    "Address",
    "AnnounceResult",
    "BootstrapResult",
    "Contact",
    "DHTConfig",
    "DHTError",
    "DHTNode",
    "DHTProtocol",
    "DatagramDropped",
    "DatagramTransport",
    "GetPeersResult",
    "GetResult",
    "LinkSpec",
    "LocalProtocolError",
    "Lookup",
    "LookupResult",
    "LookupStats",
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
