"""What the sans-IO core reports: operation handles, typed results and events.

Every operation (`DHTProtocol.start_*`) returns an `Op[R]`, an int naming the
operation and typed by its result `R`; the `OperationDone` event that ends it carries
that id and a result of type `R`.  The other events report dropped input (one
`DatagramDropped` per datagram, for debug logs; a `DropSummary` at most once per
`drop_summary_interval`, for the operator) and the bootstrap's health.

Frozen dataclasses only: this module never decides, counts, logs or touches IO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._errors import DropReason
from ._ids import Address, Contact
from ._lookup import LookupStats
from ._records import PeerRecord
from ._wire import Value

__all__ = [
    "AnnounceResult",
    "BootstrapFailed",
    "BootstrapRecovered",
    "BootstrapResult",
    "DatagramDropped",
    "DropSummary",
    "Event",
    "GetPeersResult",
    "GetResult",
    "LookupResult",
    "Op",
    "OperationDone",
    "SetResult",
]

R = TypeVar("R")


class Op(int, Generic[R]):
    """The id of an operation whose `OperationDone` carries a result of type `R`.

    An int at runtime (ids compare and hash as ints); the type parameter lets a driver
    wait for an operation and get its result typed, with no cast.
    """

    __slots__ = ()


# -- results, one type per operation -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class LookupResult:
    """`start_find_node`: the k closest nodes that answered, nearest first."""

    contacts: tuple[Contact, ...]
    stats: LookupStats


@dataclass(frozen=True, slots=True)
class GetResult:
    """`start_get`: the value found (None if none); no stats if it was held locally."""

    value: Value | None
    stats: LookupStats | None


@dataclass(frozen=True, slots=True)
class SetResult:
    """`start_set`: how many of the closest nodes took the value."""

    stored: int
    stats: LookupStats | None


@dataclass(frozen=True, slots=True)
class AnnounceResult:
    """`start_announce`: how many of the closest nodes took the record."""

    stored: int
    stats: LookupStats | None


@dataclass(frozen=True, slots=True)
class GetPeersResult:
    """`start_get_peers`: verified, unexpired records, newest first."""

    records: tuple[PeerRecord, ...]
    stats: LookupStats | None


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """`start_bootstrap`: how many bootstrap addresses answered; contacts afterwards."""

    answered: int
    contacts: int


# `start_ping` results in the node id that answered (`bytes | None`), `start_stun` in
# the address we were seen at (`Address | None`): plain values need no wrapper.


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OperationDone(Generic[R]):
    """Operation `op_id` finished with `result` (of the type its `Op` names)."""

    op_id: Op[R]
    result: R


@dataclass(frozen=True, slots=True)
class DatagramDropped:
    """One datagram (or request) from `address` was dropped; `detail` is for debug logs."""

    address: Address
    reason: DropReason
    detail: str


@dataclass(frozen=True, slots=True)
class DropSummary:
    """Input dropped since `since`, counted by reason (only reasons that occurred)."""

    since: float
    counts: tuple[tuple[DropReason, int], ...]


@dataclass(frozen=True, slots=True)
class BootstrapFailed:
    """`bootstrap_grace` after bootstrapping began there is still no contact."""

    addresses: tuple[Address, ...]


@dataclass(frozen=True, slots=True)
class BootstrapRecovered:
    """After a `BootstrapFailed`, contacts arrived."""

    contacts: int


Event = OperationDone[Any] | DatagramDropped | DropSummary | BootstrapFailed | BootstrapRecovered
