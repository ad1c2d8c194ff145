"""What a node stores for others: plain values (the package's `store`) and peer records.

Both expire, and both are bounded so a public node cannot be filled up:

- a value is at most `max_value_bytes`; a key holds one value (the package's
  last-writer-wins semantics) or at most `max_records_per_key` peer records;
- one source host may own at most `max_keys_per_source` keys, and the whole store at
  most `max_keys`.

Kademlia §2.5: every stored value is republished once an hour unless someone stored it
here during that hour; values expire `value_ttl` after their last store.  Records are
signed by their peer and are re-announced by their owner, never republished by us.

The store never verifies signatures (the protocol does, before calling `put_record`) and
never reads the clock: every call takes `now`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

from ._errors import LocalProtocolError
from ._records import PeerRecord
from ._wire import Value

__all__ = ["LOCAL_SOURCE", "StorageLimits", "StoreRefused", "ValueStore"]

LOCAL_SOURCE = "local"
MAX_VALUE_BYTES = 8000
"""The source of what this node stores itself: exempt from per-source quotas."""


@dataclass(frozen=True, slots=True)
class StorageLimits:
    # Worst case held: max_keys values of max_value_bytes (64 MiB) plus max_records
    # records of at most 512 bytes (32 MiB).
    max_value_bytes: int = 4096
    max_records_per_key: int = 64
    max_keys_per_source: int = 256
    max_keys: int = 16384
    max_records: int = 65536
    value_ttl: float = 86400.0
    republish_interval: float = 3600.0
    # A record is kept at most this long, whatever expiry it claims.
    max_record_ttl: float = 6 * 3600.0

    def __post_init__(self) -> None:
        if min(self.max_value_bytes, self.max_records_per_key, self.max_keys_per_source) < 1:
            raise LocalProtocolError("storage limits must be positive")
        # A find_value reply carries the value in one datagram of at most 8 KiB.
        if self.max_value_bytes > MAX_VALUE_BYTES:
            raise LocalProtocolError(f"max_value_bytes is at most {MAX_VALUE_BYTES}")


class StoreRefused(Exception):
    """A store or announce broke a limit; `reason` names which one (for metrics)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class _StoredValue:
    value: Value
    source: str
    stored_at: float
    republished_at: float
    original: bool


@dataclass(slots=True)
class _StoredRecord:
    record: PeerRecord
    source: str
    expires_at: float


def value_size(value: Value) -> int:
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf8", "surrogatepass"))
    return 9


class ValueStore:
    """Values and records by 20-byte key, with expiry and hard limits."""

    def __init__(self, limits: StorageLimits | None = None) -> None:
        self.limits = limits or StorageLimits()
        self._values: dict[bytes, _StoredValue] = {}
        self._records: dict[bytes, dict[bytes, _StoredRecord]] = {}
        self._keys_by_source: dict[str, set[bytes]] = {}
        self._record_count = 0
        # Keys of plain values as integers, sorted: finds keys near a newcomer's id.
        self._sorted_keys: list[int] = []

    # -- plain values -------------------------------------------------------------------

    def get_value(self, key: bytes, now: float) -> Value | None:
        stored = self._values.get(key)
        if stored is None:
            return None
        if now - stored.stored_at >= self.limits.value_ttl:
            self._drop_value(key)
            return None
        return stored.value

    def put_value(
        self, key: bytes, value: Value, source: str, now: float, *, original: bool = False
    ) -> None:
        """Store `value` from host `source`; raises StoreRefused on a broken limit."""
        if value_size(value) > self.limits.max_value_bytes:
            raise StoreRefused("value too large")
        self._admit(key, source)
        old = self._values.pop(key, None)
        if old is not None:
            # A store from someone else never clears our own publisher role.
            original = original or old.original
            self._release(key, old.source)
        else:
            bisect.insort(self._sorted_keys, int.from_bytes(key, "big"))
        self._values[key] = _StoredValue(value, source, now, now, original)
        self._keys_by_source.setdefault(source, set()).add(key)

    def values_to_republish(self, now: float) -> list[tuple[bytes, Value]]:
        """Kademlia §2.5: values not stored or republished here for an hour."""
        due = []
        for key, stored in list(self._values.items()):
            if now - stored.stored_at >= self.limits.value_ttl and not stored.original:
                self._drop_value(key)
            elif now - stored.republished_at >= self.limits.republish_interval:
                stored.republished_at = now
                due.append((key, stored.value))
        return due

    def _drop_value(self, key: bytes) -> None:
        stored = self._values.pop(key)
        self._release(key, stored.source)
        value = int.from_bytes(key, "big")
        index = bisect.bisect_left(self._sorted_keys, value)
        del self._sorted_keys[index]

    def keys_near(self, node_id: bytes, count: int) -> list[bytes]:
        """About `count` value keys numerically around `node_id`.

        Keys close to an id by XOR share a prefix with it, so they sit next to it in
        sorted order (the converse does not hold; this is a cheap candidate list).
        """
        index = bisect.bisect_left(self._sorted_keys, int.from_bytes(node_id, "big"))
        low = max(0, index - count // 2)
        return [k.to_bytes(20, "big") for k in self._sorted_keys[low : low + count]]

    # -- peer records -------------------------------------------------------------------

    def get_records(self, key: bytes, now_wall: float) -> list[PeerRecord]:
        """Unexpired records under `key`, soonest-expiring last."""
        held = self._records.get(key)
        if not held:
            return []
        for peer_id in [p for p, r in held.items() if r.expires_at <= now_wall]:
            self._drop_record(key, peer_id)
        records = [r.record for r in self._records.get(key, {}).values()]
        records.sort(key=lambda r: -r.expires)
        return records

    def put_record(self, key: bytes, record: PeerRecord, source: str, now_wall: float) -> None:
        """Store a verified record; a newer record of the same peer replaces the older."""
        held = self._records.get(key)
        old = held.get(record.peer_id) if held else None
        if old is not None:
            if old.record.expires > record.expires:
                raise StoreRefused("older record")
            # Same peer, same or newer record: a refresh, not a new entry.
            self._drop_record(key, record.peer_id)
            held = self._records.get(key)
        if held is not None and len(held) >= self.limits.max_records_per_key:
            raise StoreRefused("too many records for key")
        if self._record_count >= self.limits.max_records:
            raise StoreRefused("store full")
        self._admit(key, source)
        expires_at = min(float(record.expires), now_wall + self.limits.max_record_ttl)
        self._records.setdefault(key, {})[record.peer_id] = _StoredRecord(
            record, source, expires_at
        )
        self._record_count += 1
        self._keys_by_source.setdefault(source, set()).add(key)

    def _drop_record(self, key: bytes, peer_id: bytes) -> None:
        held = self._records[key]
        stored = held.pop(peer_id)
        self._record_count -= 1
        if not held:
            del self._records[key]
        self._release(key, stored.source)

    # -- bookkeeping --------------------------------------------------------------------

    def expire(self, now: float, now_wall: float) -> None:
        """Drop every expired value and record."""
        for key, stored in list(self._values.items()):
            if now - stored.stored_at >= self.limits.value_ttl and not stored.original:
                self._drop_value(key)
        for key in list(self._records):
            self.get_records(key, now_wall)

    def _admit(self, key: bytes, source: str) -> None:
        """Raise StoreRefused if `source` may not add (more) data under `key`."""
        is_new = key not in self._values and key not in self._records
        if is_new and len(self._values) + len(self._records) >= self.limits.max_keys:
            raise StoreRefused("store full")
        owned = self._keys_by_source.get(source)
        if (
            source != LOCAL_SOURCE
            and owned is not None
            and key not in owned
            and len(owned) >= self.limits.max_keys_per_source
        ):
            raise StoreRefused("too many keys from source")

    def _release(self, key: bytes, source: str) -> None:
        # A source keeps a key while any value or record of it under that key remains.
        if self._values.get(key) is not None and self._values[key].source == source:
            return
        if any(r.source == source for r in self._records.get(key, {}).values()):
            return
        owned = self._keys_by_source.get(source)
        if owned is not None:
            owned.discard(key)
            if not owned:
                del self._keys_by_source[source]

    def keys_of(self, source: str) -> int:
        return len(self._keys_by_source.get(source, ()))

    def __len__(self) -> int:
        return len(set(self._values) | set(self._records))

    def items(self) -> Iterator[tuple[bytes, Value]]:
        for key, stored in self._values.items():
            yield key, stored.value
