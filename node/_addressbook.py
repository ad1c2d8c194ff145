"""Address records: how the members of a room learn where each other can be dialed.

Every member signs, for each room it serves, a record of the link addresses it can be
dialed at, valid until a wall-clock time; it signs a new one before that time comes, and
an old one simply expires. Records travel between the room's members on their links (on
the room's record channel, `record_channel`, joined with the room's secret beside the
room itself, so only members see them and the gossip wire is untouched): a member whose
link joins the channel is sent ours and a few others' (`AddressBook.greeting`), and a
verified record that is news goes on to a few other members (`pass_on_to`; ours to all),
unless the book was full (`spreads`: then it is kept, and goes no further). Records are kept in the
room's file to survive a restart.

A record is a msgpack array in a fixed order (DESIGN.md: signed structures are arrays):

    [1, peer id (32 bytes), [address, ...], expires (int, wall-clock seconds), signature]

and the Ed25519 signature, by `peer id`, covers ``RECORD_CONTEXT + room id + msgpack([1,
peer id, [address, ...], expires])``: bound to one room and to this use, so no other
signature of the member's (ops, link bindings, DHT records) can pass for one.

A record is never trusted blindly: it only says where its signer claims to be. The node
dials its addresses expecting the signer's peer id (the link handshake proves who
answers), so an address that serves anyone else is a failed dial, never a link.

`decode_record` accepts a valid record or raises `RecordError` (the peer's fault),
nothing else. `AddressBook` is the pure per-room state: which records are held, which
are newer, which to drop when full, when ours needs signing again. No IO, no clock:
`now` comes in, in wall-clock seconds.
"""

from __future__ import annotations

import enum
import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import msgpack

from crdt import Identity, verify_signature
from rumor_runtime import SignatureCheck

from ._invite import InviteError, check_address

__all__ = [
    "GREETING",
    "MAX_ADDRESSES",
    "MAX_RECORDS",
    "PASS_ON",
    "RECORD_CONTEXT",
    "RECORD_TTL",
    "AddressBook",
    "AddressRecord",
    "RecordError",
    "RecordFault",
    "decode_record",
    "decode_records",
    "encode_records",
    "pass_on_to",
    "record_channel",
    "sign_record",
]

VERSION: Final = 1
RECORD_CONTEXT: Final = b"rumor address record v1\0"
RECORD_TTL: Final = 3600  # seconds a record of ours is valid; signed again at half of it
MAX_TTL: Final = 2 * RECORD_TTL  # a record valid for longer than this from now is refused
MAX_ADDRESSES: Final = 4  # per record
MAX_RECORDS: Final = 64  # others' records held per room
# A link joining a room's record channel is sent ours and at most this many others', and
# a record that is news goes on to at most PASS_ON other members: records are hints for
# dialing, and sending every record over every link made a forming room of N members
# pass N records over each of its links (N x links messages, each checked).
GREETING: Final = 8
PASS_ON: Final = 4
MIN_STEP: Final = 60  # seconds a newer record of one signer must add, or it is not news
MAX_RECORD_BYTES: Final = 1600  # 32 + 64 + 4 addresses of 300 characters, and framing
_PEER_ID_BYTES: Final = 32
_SIGNATURE_BYTES: Final = 64


class RecordFault(enum.Enum):
    """Why a record was refused: a fixed set, for logs and metric labels."""

    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    BAD_ADDRESS = "bad-address"
    BAD_SIGNATURE = "bad-signature"
    EXPIRED = "expired"
    TOO_LONG = "too-long"  # valid for longer than MAX_TTL from now


class RecordError(ValueError):
    """A record a peer sent (or a damaged stored one) that cannot be used: the sender's
    fault. `reason` says why, from a fixed set."""

    def __init__(self, fault: RecordFault, detail: str = "") -> None:
        super().__init__(f"{fault.value}: {detail}" if detail else fault.value)
        self.fault = fault
        self.reason = fault.value


def record_channel(room_id: bytes) -> bytes:
    """The link channel a room's address records travel on: an id derived from the
    room's, joined on a link with the room's secret (so the same proof guards it)."""
    return hashlib.blake2b(room_id, digest_size=32, person=b"rumor-addr-chan").digest()


@dataclass(frozen=True, slots=True)
class AddressRecord:
    """Where `peer_id` says it can be dialed for one room, until `expires` (wall-clock
    seconds); `data` is the signed wire form."""

    peer_id: bytes
    addresses: tuple[str, ...]
    expires: int
    data: bytes

    def expired(self, now: float) -> bool:
        return self.expires <= now


def _signed_part(room_id: bytes, peer_id: bytes, addresses: list[str], expires: int) -> bytes:
    body: bytes = msgpack.packb([VERSION, peer_id, addresses, expires], use_bin_type=True)
    return RECORD_CONTEXT + room_id + body


def sign_record(
    identity: Identity, room_id: bytes, addresses: Iterable[str], expires: int
) -> AddressRecord:
    """Our record for `room_id`; ValueError (a local mistake) for unusable addresses."""
    listed = list(addresses)
    if not 1 <= len(listed) <= MAX_ADDRESSES:
        raise ValueError(f"a record lists 1 to {MAX_ADDRESSES} addresses")
    for address in listed:
        check_address(address)
    signature = identity.sign(_signed_part(room_id, identity.peer_id, listed, expires))
    data: bytes = msgpack.packb(
        [VERSION, identity.peer_id, listed, expires, signature], use_bin_type=True
    )
    return AddressRecord(identity.peer_id, tuple(listed), expires, data)


def decode_record(
    data: bytes, room_id: bytes, now: float, check: SignatureCheck | None = None
) -> AddressRecord:
    """The record in `data`, signed for `room_id` and valid at `now`; RecordError else.
    `check`, if given, checks the signature (a simulation hands in its shared one)."""
    if not isinstance(data, bytes) or len(data) > MAX_RECORD_BYTES:
        raise RecordError(RecordFault.OVERSIZED, f"{len(data)} bytes")
    try:
        fields = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            max_array_len=MAX_ADDRESSES + 5,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception:  # msgpack raises many types on bad input; all are the sender's doing
        raise RecordError(RecordFault.MALFORMED, "not msgpack") from None
    if not isinstance(fields, list) or len(fields) != 5:
        raise RecordError(RecordFault.MALFORMED, "not a 5-element array")
    version, peer_id, addresses, expires, signature = fields
    if type(version) is not int or version != VERSION:
        raise RecordError(RecordFault.MALFORMED, f"version {version!r}")
    if not isinstance(peer_id, bytes) or len(peer_id) != _PEER_ID_BYTES:
        raise RecordError(RecordFault.MALFORMED, "peer id")
    if not isinstance(signature, bytes) or len(signature) != _SIGNATURE_BYTES:
        raise RecordError(RecordFault.MALFORMED, "signature")
    if type(expires) is not int:
        raise RecordError(RecordFault.MALFORMED, "expiry")
    if (
        not isinstance(addresses, list)
        or not 1 <= len(addresses) <= MAX_ADDRESSES
        or not all(isinstance(a, str) for a in addresses)
    ):
        raise RecordError(RecordFault.MALFORMED, "address list")
    for address in addresses:
        try:
            check_address(address)
        except InviteError:
            raise RecordError(RecordFault.BAD_ADDRESS, address[:60]) from None
    # The bytes must be the canonical encoding, so one record has one wire form.
    canonical = msgpack.packb([version, peer_id, addresses, expires, signature], use_bin_type=True)
    if canonical != data:
        raise RecordError(RecordFault.MALFORMED, "not in canonical form")
    signed = _signed_part(room_id, peer_id, addresses, expires)
    if not (check or verify_signature)(peer_id, signature, signed):
        raise RecordError(RecordFault.BAD_SIGNATURE)
    if expires <= now:
        raise RecordError(RecordFault.EXPIRED)
    if expires > now + MAX_TTL:
        raise RecordError(RecordFault.TOO_LONG, f"valid for {expires - now:.0f} s")
    return AddressRecord(peer_id, tuple(addresses), expires, data)


def encode_records(records: Iterable[AddressRecord]) -> bytes:
    """The records' wire forms as one msgpack array (kept in a room file's meta)."""
    packed: bytes = msgpack.packb([r.data for r in records], use_bin_type=True)
    return packed


def decode_records(
    data: bytes, room_id: bytes, now: float, check: SignatureCheck | None = None
) -> list[AddressRecord]:
    """The valid, unexpired records of a stored list; damaged or stale ones are left
    out (a stored list is only a hint for the next start)."""
    try:
        items = msgpack.unpackb(data, raw=False, max_array_len=MAX_RECORDS + 1, max_map_len=0)
    except Exception:  # damaged meta: nothing usable
        return []
    if not isinstance(items, list):
        return []
    records = []
    for item in items:
        try:
            records.append(decode_record(item, room_id, now, check))
        except RecordError:
            continue
    return records


class AddressBook:
    """The address records one node holds for one room (pure; see the module docstring).

    Others' records: at most `limit`, one per signer, the one that expires last; when
    full, the record that expires first makes room. Ours is kept apart, signed by the
    driver when `needs_signing(now)` says so.
    """

    def __init__(self, room_id: bytes, our_id: bytes, *, limit: int = MAX_RECORDS) -> None:
        self.room_id = room_id
        self.our_id = our_id
        self.limit = limit
        self.own: AddressRecord | None = None
        self._records: dict[bytes, AddressRecord] = {}

    def needs_signing(self, addresses: tuple[str, ...], now: float) -> bool:
        """Whether ours must be signed (again): none yet, other addresses, or half its
        lifetime gone."""
        own = self.own
        if not addresses:
            return False
        return own is None or own.addresses != addresses or own.expires - now < RECORD_TTL / 2

    def set_own(self, record: AddressRecord) -> None:
        self.own = record

    def add(self, record: AddressRecord, now: float) -> bool:
        """Keep a verified record if it is news: a signer not held yet, or one whose
        record now lasts at least `MIN_STEP` longer or names other addresses. Returns
        whether it was kept (and so should be passed on)."""
        if record.peer_id == self.our_id or record.expired(now):
            return False
        held = self._records.get(record.peer_id)
        if held is not None:
            if record.expires <= held.expires:
                return False
            if record.addresses == held.addresses and record.expires < held.expires + MIN_STEP:
                return False
        else:
            self._drop_expired(now)
            if len(self._records) >= self.limit:
                first = min(self._records.values(), key=lambda r: (r.expires, r.peer_id))
                if first.expires >= record.expires:
                    return False
                del self._records[first.peer_id]
        self._records[record.peer_id] = record
        return True

    def records(self, now: float) -> list[AddressRecord]:
        """Every unexpired record held, ours first, then by signer."""
        self._drop_expired(now)
        own = [self.own] if self.own is not None and not self.own.expired(now) else []
        return own + [self._records[p] for p in sorted(self._records)]

    def others(self, now: float) -> list[AddressRecord]:
        """The unexpired records of the other members, by signer."""
        self._drop_expired(now)
        return [self._records[p] for p in sorted(self._records)]

    def greeting(self, now: float, rng: random.Random) -> list[AddressRecord]:
        """What a member whose link just joined the room's channel is sent: ours, and at
        most `GREETING` of the others' at random."""
        own = [self.own] if self.own is not None and not self.own.expired(now) else []
        others = self.others(now)
        if len(others) > GREETING:
            others = rng.sample(others, GREETING)
        return own + others

    def spreads(self, record: AddressRecord, now: float) -> bool:
        """Whether `record`, if `add` keeps it, goes on to other members: a refresh of a
        signer held, or any record while the book has room. A full book keeps a new
        signer's record but passes it on no further: in a room of more members than a
        book holds, every record would otherwise reach every member (N records to N
        members as the room forms), to push another out there."""
        self._drop_expired(now)
        return record.peer_id in self._records or len(self._records) < self.limit

    def get(self, peer_id: bytes) -> AddressRecord | None:
        return self._records.get(peer_id)

    def _drop_expired(self, now: float) -> None:
        for peer_id in [p for p, r in self._records.items() if r.expired(now)]:
            del self._records[peer_id]


def pass_on_to(members: list[bytes], rng: random.Random, limit: int = PASS_ON) -> list[bytes]:
    """Which of the linked `members` a record that is news goes on to: at most `limit`,
    at random (each of them passes it on in turn)."""
    return members if len(members) <= limit else rng.sample(members, limit)
