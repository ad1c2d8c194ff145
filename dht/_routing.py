"""The Kademlia routing table: k-buckets that split around our own id.

Rules kept here (and only here):

- Kademlia §2.2: a bucket keeps its contacts least-recently seen first; a contact seen
  again moves to the tail.
- Kademlia §2.4: a full bucket splits only if its range holds our own id.
- Kademlia §2.2/§4.1: when a full, unsplittable bucket meets a new contact, the new one
  waits in the bucket's replacement cache and the least-recently seen contact is pinged;
  it is evicted only if it fails to answer, and the freshest replacement takes its place.
  A least-recently seen contact heard from within `fresh_for` seconds is known to be
  alive and is not pinged (as BEP 5 pings only "questionable" nodes).
- Kademlia §2.3: buckets that saw no lookup for an hour are refreshed with a lookup of a
  random id in their range.

This table never sends anything or reads a clock: `observe` returns the contact the
caller should ping, and the caller reports the outcome with `observe` or `failed`.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ._errors import LocalProtocolError
from ._ids import ID_BITS, Address, Contact, check_node_id, id_to_int, random_id

__all__ = ["Bucket", "RoutingTable"]


@dataclass(slots=True)
class _Entry:
    contact: Contact
    last_seen: float
    bucket: Bucket  # the one holding it (moved on a split)
    fails: int = 0


class Bucket:
    """One k-bucket: ids in [low, high), live contacts and a replacement cache."""

    def __init__(self, low: int, high: int, last_touched: float) -> None:
        self.low = low
        self.high = high
        # Ordered least-recently seen first (Kademlia §2.2).
        self.entries: OrderedDict[bytes, _Entry] = OrderedDict()
        # The same contacts, bare, for `closest` (the hot path of every lookup).
        self.contacts: dict[bytes, Contact] = {}
        # Newest last; bounded by the table.
        self.replacements: OrderedDict[bytes, Contact] = OrderedDict()
        self.last_touched = last_touched
        self.pinging: bytes | None = None
        # The bucket is an id-prefix subtree of 2**m ids: this mask keeps the prefix.
        self.prefix_mask = -(high - low)

    def covers(self, value: int) -> bool:
        return self.low <= value < self.high

    def __len__(self) -> int:
        return len(self.entries)


class RoutingTable:
    """k-buckets around `own_id`.  Sans-IO: returns what to ping, never pings."""

    def __init__(
        self,
        own_id: bytes,
        *,
        k: int = 20,
        replacement_size: int | None = None,
        max_fails: int = 2,
        max_per_host: int | None = None,
        fresh_for: float = 0.0,
        now: float = 0.0,
    ) -> None:
        if k < 1 or max_fails < 1:
            raise LocalProtocolError("k and max_fails are at least 1")
        self.own_id = check_node_id(own_id)
        self._own = id_to_int(own_id)
        self.k = k
        self.replacement_size = k if replacement_size is None else replacement_size
        self.max_fails = max_fails
        # A contact heard from this recently is alive: no eviction ping for it.
        self.fresh_for = fresh_for
        # At most this many contacts per IP (loopback exempt): one host cannot fill the
        # table with made-up ids on many ports (a cheap Sybil attack).
        self.max_per_host = max_per_host
        self._per_host: dict[str, int] = {}
        self.buckets: list[Bucket] = [Bucket(0, 1 << ID_BITS, now)]
        # One id per address: a second id claiming a known address is ignored, so one
        # host cannot fill a bucket by answering under many ids.
        self._by_address: dict[Address, bytes] = {}
        # Every live contact's entry, flat: `seen` runs on every datagram.
        self._entries: dict[bytes, _Entry] = {}
        self.ipv6_contacts = 0  # so serving an IPv4-only table skips the family filter

    # -- lookups into the table -------------------------------------------------------

    def bucket_index(self, node_id: bytes) -> int:
        value = id_to_int(node_id)
        lo, hi = 0, len(self.buckets) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if value < self.buckets[mid].high:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def bucket_for(self, node_id: bytes) -> Bucket:
        return self.buckets[self.bucket_index(node_id)]

    def get(self, node_id: bytes) -> Contact | None:
        entry = self._entries.get(node_id)
        return entry.contact if entry is not None else None

    def __contains__(self, node_id: bytes) -> bool:
        return node_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Contact]:
        for bucket in self.buckets:
            for entry in bucket.entries.values():
                yield entry.contact

    def closest(
        self, target: bytes, count: int | None = None, *, exclude: Address | None = None
    ) -> list[Contact]:
        """The `count` (default k) known contacts closest to `target` by XOR distance."""
        count = self.k if count is None else count
        # One id per address, so excluding an address drops at most one contact.
        want = count if exclude is None else count + 1
        t = id_to_int(target)
        buckets = self.buckets
        if len(buckets) > 1:
            # Each bucket is an id-prefix subtree, so its ids lie in one band of XOR
            # distances from the target, and the bands of two buckets never overlap:
            # walking the buckets nearest band first, we can stop once we have `want`.
            buckets = sorted(buckets, key=lambda b: (b.low ^ t) & b.prefix_mask)
        # Distinct ids have distinct XOR distances to one target: a dict keyed by distance
        # and one sort of plain ints is several times faster than a keyed heap.
        by_distance: dict[int, Contact] = {}
        for bucket in buckets:
            by_distance.update({c.distance_key ^ t: c for c in bucket.contacts.values()})
            if len(by_distance) >= want:
                break
        closest = [by_distance[d] for d in sorted(by_distance)[:want]]
        if exclude is None:
            return closest
        kept = [c for c in closest if c.port != exclude[1] or c.host != exclude[0]]
        return kept[:count]

    # -- updates ----------------------------------------------------------------------

    def seen(self, node_id: bytes, address: Address, now: float) -> bool:
        """Fast path of `observe` for a known contact at its known address.

        Returns False if `node_id` is not in the table at `address`; then call `observe`.
        """
        entry = self._entries.get(node_id)
        if entry is None:
            return False
        contact = entry.contact
        if contact.port != address[1] or contact.host != address[0]:
            return False
        bucket = entry.bucket
        entry.last_seen = now
        entry.fails = 0
        bucket.entries.move_to_end(node_id)
        if bucket.pinging == node_id:
            bucket.pinging = None
        return True

    def observe(self, contact: Contact, now: float) -> Contact | None:
        """A message from `contact` arrived.  Returns a contact to ping, or None.

        The returned contact is the least-recently seen one of a full bucket; the caller
        pings it and reports `observe` (it answered: it stays, the newcomer waits in the
        replacement cache) or `failed` (it is evicted for the freshest replacement).
        """
        node_id = contact.node_id
        if node_id == self.own_id:
            return None
        if (
            self.max_per_host is not None
            and node_id not in self._entries
            and self._per_host.get(contact.host, 0) >= self.max_per_host
            and not _is_loopback(contact.host)
        ):
            return None
        known_id = self._by_address.get(contact.address)
        if known_id is not None and known_id != node_id and known_id in self:
            return None
        while True:
            bucket = self.bucket_for(node_id)
            entry = bucket.entries.get(node_id)
            if entry is not None:
                if entry.contact.address != contact.address:
                    # An id that moved: keep the old address while it still answers.
                    return None
                entry.last_seen = now
                entry.fails = 0
                bucket.entries.move_to_end(node_id)
                if bucket.pinging == node_id:
                    # It answered the eviction ping: it stays, the newcomer waits.
                    bucket.pinging = None
                return None
            if len(bucket) < self.k:
                self._add(bucket, contact, now)
                bucket.replacements.pop(node_id, None)
                return None
            if bucket.covers(self._own):
                self._split(bucket)
                continue
            # Kademlia §2.2: full and not ours to split; remember the newcomer and ask
            # the least-recently seen contact whether it is still alive.
            bucket.replacements.pop(node_id, None)
            bucket.replacements[node_id] = contact
            while len(bucket.replacements) > self.replacement_size:
                bucket.replacements.popitem(last=False)
            if bucket.pinging is not None and bucket.pinging in bucket.entries:
                return None
            oldest = next(iter(bucket.entries.values()))
            if now - oldest.last_seen < self.fresh_for:
                # Even the least-recently seen was heard from lately: every contact here
                # is alive, and asking again would cost a ping per newcomer's datagram.
                return None
            bucket.pinging = oldest.contact.node_id
            return oldest.contact

    def failed(self, node_id: bytes) -> None:
        """`node_id` did not answer a request: maybe evict it (Kademlia §4.1)."""
        bucket = self.bucket_for(node_id)
        if bucket.pinging == node_id:
            bucket.pinging = None
        entry = bucket.entries.get(node_id)
        if entry is None:
            bucket.replacements.pop(node_id, None)
            return
        entry.fails += 1
        # A contact with a replacement waiting goes at once; without one it is kept
        # until it fails repeatedly, since a stale contact beats an empty slot.
        if bucket.replacements or entry.fails >= self.max_fails:
            self._remove(bucket, node_id)
            if bucket.replacements:
                _, fresh = bucket.replacements.popitem(last=True)
                self._add(bucket, fresh, entry.last_seen)

    def remove(self, node_id: bytes) -> None:
        bucket = self.bucket_for(node_id)
        if node_id in bucket.entries:
            self._remove(bucket, node_id)
        bucket.replacements.pop(node_id, None)

    def touch(self, target: bytes, now: float) -> None:
        """A lookup for `target` ran: its bucket needs no refresh for a while."""
        self.bucket_for(target).last_touched = now

    def refresh_targets(self, now: float, interval: float, rng: random.Random) -> list[bytes]:
        """Kademlia §2.3: a random id in each bucket untouched for `interval` seconds."""
        targets = []
        for bucket in self.buckets:
            if now - bucket.last_touched >= interval:
                bucket.last_touched = now
                targets.append(random_id(rng, bucket.low, bucket.high))
        return targets

    def add_all(self, contacts: Iterable[Contact], now: float) -> None:
        """Seed the table (e.g. from saved contacts); full buckets keep what they have."""
        for contact in contacts:
            self.observe(contact, now)

    # -- internals --------------------------------------------------------------------

    def _add(self, bucket: Bucket, contact: Contact, now: float) -> None:
        entry = _Entry(contact, now, bucket)
        bucket.entries[contact.node_id] = entry
        bucket.contacts[contact.node_id] = contact
        self._by_address[contact.address] = contact.node_id
        self._entries[contact.node_id] = entry
        self._per_host[contact.host] = self._per_host.get(contact.host, 0) + 1
        self.ipv6_contacts += ":" in contact.host

    def _remove(self, bucket: Bucket, node_id: bytes) -> None:
        entry = bucket.entries.pop(node_id)
        del bucket.contacts[node_id]
        del self._entries[node_id]
        host = entry.contact.host
        self.ipv6_contacts -= ":" in host
        if self._per_host[host] == 1:
            del self._per_host[host]
        else:
            self._per_host[host] -= 1
        if self._by_address.get(entry.contact.address) == node_id:
            del self._by_address[entry.contact.address]

    def _split(self, bucket: Bucket) -> None:
        index = self.buckets.index(bucket)
        mid = (bucket.low + bucket.high) // 2
        left = Bucket(bucket.low, mid, bucket.last_touched)
        right = Bucket(mid, bucket.high, bucket.last_touched)
        for node_id, entry in bucket.entries.items():
            half = left if entry.contact.distance_key < mid else right
            entry.bucket = half
            half.entries[node_id] = entry
            half.contacts[node_id] = entry.contact
        for node_id, contact in bucket.replacements.items():
            (left if contact.distance_key < mid else right).replacements[node_id] = contact
        self.buckets[index : index + 1] = [left, right]


def _is_loopback(host: str) -> bool:
    return host == "::1" or host.startswith("127.")
