"""One room's replicated history: the set of accepted ops and the views derived from it.

Pure: no IO, no clock reads. Every view is a deterministic function of the set of ops
that have taken effect, so two replicas holding the same ops show the same room whatever
order the ops arrived in.

An op takes effect once what it depends on has: its chain predecessor (`prev`, which must
be the same author's op at `seq - 1` with a smaller timestamp) and, for an edit, delete or
reaction, its target message. Until then it is held. Dependencies are named by hash, so
the set of ops that can take effect does not depend on arrival order; rejections that
depend on another op (wrong prev, an edit of someone else's message) rest only on that
op's own signed content, so they come out the same in every order too.
"""

from __future__ import annotations

import bisect
import heapq
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ._hlc import HLC, make_hlc
from ._identity import Identity
from ._op import ID_BYTES, InvalidOp, Kind, Op, Reason, decode_op, encode_op
from ._views import (
    ApplyResult,
    AuthorForked,
    Change,
    MemberJoined,
    MemberLeft,
    Message,
    MessageAdded,
    MessageChanged,
    NickChanged,
    OpDropped,
    Outcome,
    TopicChanged,
    render_views,
)

__all__ = ["Replica"]

SortKey = tuple[int, bytes, int, bytes]
# Held ops are kept in memory (and on disk) until what they wait for arrives; a peer
# sending ops whose predecessors never come must not be able to fill memory with them.
DEFAULT_MAX_PENDING = 10_000
DEFAULT_MAX_PENDING_BYTES = 8 * 1024 * 1024
REMEMBERED_REJECTIONS = 10_000
KEY_CACHE_SIZE = 1024


def _positions(chain: _Chain, start: int) -> Iterator[tuple[int, Op]]:
    indexes, ops = chain.indexes, chain.ops
    for position in range(start, len(ops)):
        yield indexes[position], ops[position]


class _Chain:
    """One author's ops that took effect. Their seqs are always 1..head with no gap."""

    __slots__ = ("first_at", "forks", "head", "indexes", "ops")

    def __init__(self) -> None:
        self.head = 0
        self.first_at: dict[int, Op] = {}  # seq -> the first op that took effect there
        self.forks: set[int] = set()  # seqs holding more than one op
        self.ops: list[Op] = []  # in the order they took effect
        self.indexes: list[int] = []  # their effect indexes (two lists: no tuple per op)


class Replica:
    """The history of the room `room`; `identity` and `clock` are needed only to author.

    The rules live in the methods of the "applying" section; where they keep the ops in
    effect and the per-message views is a matter for the "state" hooks (`_known`, `_find`,
    `_put_held`, `_put_effect`, `_extend_chain`, and the view hooks). This class keeps
    them in memory; `crdt`'s stored room keeps them in SQLite beside the ops, so both show
    the same views by construction.
    """

    def __init__(
        self,
        room: bytes,
        *,
        identity: Identity | None = None,
        clock: HLC | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
    ) -> None:
        if len(room) != ID_BYTES:
            raise ValueError("a room id is 32 bytes")
        self.room = room
        self.identity = identity
        self.clock = clock if clock is not None else HLC()
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self._effects = 0  # ops that took effect so far: the next one's effect index
        self._waiting: dict[bytes, list[Op]] = {}  # missing op id -> ops held for it
        self._held: dict[bytes, bytes] = {}  # held op id -> the op id it waits for
        self._held_ops: dict[bytes, Op] = {}  # held op id -> the op
        self._held_bytes = 0
        self._rejected: OrderedDict[bytes, Reason] = OrderedDict()
        self._keys: OrderedDict[bytes, Ed25519PublicKey] = OrderedDict()
        self._chains: dict[bytes, _Chain] = {}
        self._topic: tuple[SortKey, str, bytes] | None = None
        self._nicks: dict[bytes, tuple[SortKey, str]] = {}
        self._membership: dict[bytes, tuple[SortKey, bool]] = {}
        # In memory: every op in effect, and message state in flat maps of plain tuples
        # rather than an object per message (the garbage collector walks fewer objects).
        self._ops: dict[bytes, Op] = {}  # every op in effect
        self._effect_index: dict[bytes, int] = {}  # ops in effect -> order they took effect
        self._edits: dict[bytes, tuple[SortKey, str]] = {}  # message -> latest edit
        self._deleted: set[bytes] = set()
        # message -> (author, emoji) -> (key of the latest react/unreact, reacted?)
        self._reactions: dict[bytes, dict[tuple[bytes, str], tuple[SortKey, bool]]] = {}
        self._timeline: list[SortKey] = []

    # -- applying ---------------------------------------------------------------------------

    def apply(self, data: bytes, *, now_ms: int | None = None) -> ApplyResult:
        """Decode, verify and apply one op's wire bytes.

        `now_ms` is the local wall clock; with it, ops stamped further in the future than
        the clock's skew tolerance are refused. Leave it out only for trusted input.
        """
        try:
            op = decode_op(data)
        except InvalidOp as exc:
            return ApplyResult(Outcome.REJECTED, None, exc.reason)
        early = self.check(op, now_ms=now_ms)
        if early is not None:
            return early
        if not op.signature_ok(self._public_key(op.author)):
            return ApplyResult(Outcome.REJECTED, op.id, Reason.BAD_SIGNATURE)
        return self.admit(op)

    def check(self, op: Op, *, now_ms: int | None = None) -> ApplyResult | None:
        """The outcome for `op` if it is known without its signature, else None.

        Bulk ingest calls this first so that duplicates and strays are never verified.
        """
        if self._known(op.id):
            return ApplyResult(Outcome.DUPLICATE, op.id)
        return self.check_unknown(op, now_ms=now_ms)

    def check_unknown(self, op: Op, *, now_ms: int | None = None) -> ApplyResult | None:
        """`check` for an op already known not to be here."""
        rejected = self._rejected.get(op.id)
        if rejected is not None:
            return ApplyResult(Outcome.REJECTED, op.id, rejected)
        if op.room != self.room:
            return ApplyResult(Outcome.REJECTED, op.id, Reason.WRONG_ROOM)
        if now_ms is not None and not self.clock.acceptable(op.hlc, now_ms):
            return ApplyResult(Outcome.REJECTED, op.id, Reason.CLOCK_SKEW)
        return None

    def admit(self, op: Op) -> ApplyResult:
        """Apply an op that passed `check` and whose signature the caller has verified."""
        changes: list[Change] = []
        outcome, reason, waiting_for = self.admit_into(op, changes)
        return ApplyResult(outcome, op.id, reason, waiting_for, tuple(changes))

    def admit_into(
        self, op: Op, changes: list[Change]
    ) -> tuple[Outcome, Reason | None, bytes | None]:
        """`admit`, appending the view changes to `changes`: for bulk ingest, which would
        rather not build a result object per op. Returns (outcome, reason, waiting for)."""
        if self._known_op(op):
            return Outcome.DUPLICATE, None, None
        waiting_for, reason = self._dependency(op)
        if reason is not None:
            self._remember_rejection(op.id, reason)
            return Outcome.REJECTED, reason, None
        if waiting_for is not None and (
            len(self._held) >= self.max_pending
            or self._held_bytes + len(op.data) > self.max_pending_bytes
        ):
            return Outcome.REJECTED, Reason.TOO_MANY_PENDING, None
        self.clock.observe(op.hlc)
        if waiting_for is not None:
            self._hold(op, waiting_for)
            self._put_held(op)
            return Outcome.ADDED, None, waiting_for
        self._take_effect(op, changes)
        return Outcome.ADDED, None, None

    def _dependency(self, op: Op) -> tuple[bytes | None, Reason | None]:
        """(the op `op` still waits for, or the reason it can never take effect)."""
        if op.prev is not None:
            prev = self._find(op.prev)
            if prev is None:
                if op.prev in self._rejected:
                    return None, Reason.BAD_PREV
                return op.prev, None
            if prev.author != op.author or prev.seq != op.seq - 1 or prev.hlc >= op.hlc:
                return None, Reason.BAD_PREV
            if op.prev in self._held:
                return op.prev, None
        target_id = op.target
        if target_id is not None:
            target = self._find(target_id)
            if target is None:
                if target_id in self._rejected:
                    return None, Reason.BAD_TARGET
                return target_id, None
            if target.kind != Kind.MESSAGE:
                return None, Reason.BAD_TARGET
            if op.kind in (Kind.EDIT, Kind.DELETE) and target.author != op.author:
                return None, Reason.NOT_AUTHOR
            if target_id in self._held:
                return target_id, None
        return None, None

    def _hold(self, op: Op, waiting_for: bytes) -> None:
        if op.id not in self._held:
            self._held_bytes += len(op.data)
            self._held_ops[op.id] = op
        self._held[op.id] = waiting_for
        self._waiting.setdefault(waiting_for, []).append(op)

    def _unhold(self, op: Op) -> bool:
        if self._held.pop(op.id, None) is not None:
            self._held_bytes -= len(op.data)
            del self._held_ops[op.id]
            return True
        return False

    def _take_effect(self, first: Op, changes: list[Change]) -> None:
        work = [first]
        while work:
            op = work.pop()
            was_held = self._unhold(op)
            index = self._effects
            self._effects += 1
            self._put_effect(op, index, was_held)
            self._extend_chain(op, index, changes)
            self._show(op, changes)
            for waiter in self._waiting.pop(op.id, ()):
                waiting_for, reason = self._dependency(waiter)
                if reason is not None:
                    self._drop(waiter, reason, changes)
                elif waiting_for is not None:
                    self._hold(waiter, waiting_for)
                else:
                    work.append(waiter)

    def _drop(self, op: Op, reason: Reason, changes: list[Change]) -> None:
        """Forget a held op that can never take effect, and everything held for it."""
        work = [(op, reason)]
        while work:
            dropped, why = work.pop()
            self._unhold(dropped)
            self._forget_held(dropped)
            self._remember_rejection(dropped.id, why)
            changes.append(OpDropped(dropped.id, why))
            for waiter in self._waiting.pop(dropped.id, ()):
                work.append(
                    (waiter, Reason.BAD_PREV if waiter.prev == dropped.id else Reason.BAD_TARGET)
                )

    def _remember_rejection(self, op_id: bytes, reason: Reason) -> None:
        # Only for reasons that rest on the op's signed content, so a forged copy with a bad
        # signature can never get a genuine op refused.
        self._rejected[op_id] = reason
        if len(self._rejected) > REMEMBERED_REJECTIONS:
            self._rejected.popitem(last=False)

    def _show(self, op: Op, changes: list[Change]) -> None:
        """Fold an op that took effect into the views."""
        kind = op.kind
        key = op.sort_key
        if kind == Kind.MESSAGE:
            self._add_message(op)
            changes.append(MessageAdded(op.id))
        elif kind == Kind.EDIT:
            target = op.body[0]
            current = self._edit_key(target)
            if current is None:
                found = self._find(target)
                assert found is not None  # a target takes effect before what aims at it
                current = found.sort_key
            if key > current:
                self._set_edit(target, op)
                if not self._is_deleted(target):
                    changes.append(MessageChanged(target))
        elif kind == Kind.DELETE:
            target = op.body[0]
            if not self._is_deleted(target):
                self._set_deleted(target, op)
                changes.append(MessageChanged(target))
        elif kind == Kind.REACT or kind == Kind.UNREACT:
            target = op.body[0]
            slot = (op.author, op.body[1])
            current_reaction = self._reaction(target, slot)
            if current_reaction is None or key > current_reaction[0]:
                present = kind == Kind.REACT
                self._set_reaction(target, slot, op, present)
                was_present = current_reaction is not None and current_reaction[1]
                if present != was_present and not self._is_deleted(target):
                    changes.append(MessageChanged(target))
        elif kind == Kind.TOPIC:
            if self._topic is None or key > self._topic[0]:
                self._topic = (key, op.body[0], op.author)
                self._set_register(op)
                changes.append(TopicChanged(op.body[0], op.author))
        elif kind == Kind.NICK:
            nick = self._nicks.get(op.author)
            if nick is None or key > nick[0]:
                self._nicks[op.author] = (key, op.body[0])
                self._set_register(op)
                changes.append(NickChanged(op.author, op.body[0]))
        else:
            joined = kind == Kind.JOIN
            membership = self._membership.get(op.author)
            if membership is None or key > membership[0]:
                self._membership[op.author] = (key, joined)
                self._set_register(op)
                if membership is None or membership[1] != joined:
                    changes.append(MemberJoined(op.author) if joined else MemberLeft(op.author))

    def _public_key(self, author: bytes) -> Ed25519PublicKey | None:
        key = self._keys.get(author)
        if key is None:
            try:
                key = Ed25519PublicKey.from_public_bytes(author)
            except ValueError:
                return None
            self._keys[author] = key
            if len(self._keys) > KEY_CACHE_SIZE:
                self._keys.popitem(last=False)
        return key

    # -- state: where accepted ops and message views are kept (here: in memory) -----------

    def _known(self, op_id: bytes) -> bool:
        """Whether `op_id` was accepted (held or in effect)."""
        return op_id in self._ops or op_id in self._held

    def _known_op(self, op: Op) -> bool:
        """`_known(op.id)`; a store may answer from `op`'s author and seq without a lookup."""
        return self._known(op.id)

    def _find(self, op_id: bytes) -> Op | None:
        """An accepted op (held or in effect) by id."""
        op = self._ops.get(op_id)
        return op if op is not None else self._held_ops.get(op_id)

    def _put_held(self, op: Op) -> None:
        """`op` was accepted but waits (`_held_ops` has it already)."""

    def _forget_held(self, op: Op) -> None:
        """A held op turned out invalid and is dropped."""

    def _put_effect(self, op: Op, index: int, was_held: bool) -> None:
        self._ops[op.id] = op
        self._effect_index[op.id] = index

    def _extend_chain(self, op: Op, index: int, changes: list[Change]) -> None:
        chain = self._chains.get(op.author)
        if chain is None:
            chain = self._chains[op.author] = _Chain()
        if op.seq in chain.first_at:
            if op.seq not in chain.forks:
                chain.forks.add(op.seq)
                changes.append(AuthorForked(op.author, op.seq))
        else:
            chain.first_at[op.seq] = op
            if op.seq > chain.head:
                chain.head = op.seq
        chain.ops.append(op)
        chain.indexes.append(index)

    def _add_message(self, op: Op) -> None:
        key = op.sort_key
        if not self._timeline or key > self._timeline[-1]:
            self._timeline.append(key)
        else:
            bisect.insort(self._timeline, key)

    def _edit_key(self, target: bytes) -> SortKey | None:
        """The sort key of the edit `target` shows, or None if it shows no edit."""
        current = self._edits.get(target)
        return None if current is None else current[0]

    def _set_edit(self, target: bytes, op: Op) -> None:
        self._edits[target] = (op.sort_key, op.body[1])

    def _is_deleted(self, target: bytes) -> bool:
        return target in self._deleted

    def _set_deleted(self, target: bytes, op: Op) -> None:
        self._deleted.add(target)

    def _reaction(self, target: bytes, slot: tuple[bytes, str]) -> tuple[SortKey, bool] | None:
        reactions = self._reactions.get(target)
        return None if reactions is None else reactions.get(slot)

    def _set_reaction(self, target: bytes, slot: tuple[bytes, str], op: Op, present: bool) -> None:
        reactions = self._reactions.get(target)
        if reactions is None:
            reactions = self._reactions[target] = {}
        reactions[slot] = (op.sort_key, present)

    def _set_register(self, op: Op) -> None:
        """`op` is now the latest topic, nick or join/leave of its kind (and author)."""

    def _head_op(self, author: bytes) -> tuple[int, bytes | None, int]:
        """(head seq, id and hlc of the first op that took effect there) of a chain."""
        chain = self._chains.get(author)
        if chain is None or not chain.head:
            return 0, None, 0
        op = chain.first_at[chain.head]
        return chain.head, op.id, op.hlc

    # -- authoring --------------------------------------------------------------------------

    def create(self, kind: Kind, body: tuple[Any, ...], *, now_ms: int) -> Op:
        """A new signed op of the local identity, chained after its last one; not applied.

        The caller makes it durable, then applies it with `admit`, before anyone sees it;
        creating two ops without applying the first would fork the local chain.
        Raises ValueError for an op that would be refused (such as editing another's message).
        """
        if self.identity is None:
            raise ValueError("this replica has no identity to author with")
        me = self.identity.peer_id
        target_id = body[0] if kind in (Kind.EDIT, Kind.DELETE, Kind.REACT, Kind.UNREACT) else None
        if target_id is not None:
            target = self._find(target_id)
            if target is None or target.kind != Kind.MESSAGE or target_id in self._held:
                raise ValueError("no such message")
            if kind in (Kind.EDIT, Kind.DELETE) and target.author != me:
                raise ValueError("only a message's author may edit or delete it")
        head, prev, prev_hlc = self._head_op(me)
        seq = head + 1
        self.clock.observe(prev_hlc)
        return encode_op(
            self.identity,
            room=self.room,
            seq=seq,
            prev=prev,
            hlc=self.clock.now(now_ms),
            kind=kind,
            body=body,
        )

    def new_message(self, text: str, *, reply_to: bytes | None = None, now_ms: int) -> Op:
        return self.create(Kind.MESSAGE, (text, reply_to), now_ms=now_ms)

    def new_edit(self, target: bytes, text: str, *, now_ms: int) -> Op:
        return self.create(Kind.EDIT, (target, text), now_ms=now_ms)

    def new_delete(self, target: bytes, *, now_ms: int) -> Op:
        return self.create(Kind.DELETE, (target,), now_ms=now_ms)

    def new_reaction(self, target: bytes, emoji: str, *, now_ms: int, remove: bool = False) -> Op:
        return self.create(Kind.UNREACT if remove else Kind.REACT, (target, emoji), now_ms=now_ms)

    def new_topic(self, topic: str, *, now_ms: int) -> Op:
        return self.create(Kind.TOPIC, (topic,), now_ms=now_ms)

    def new_nick(self, nick: str, *, now_ms: int) -> Op:
        return self.create(Kind.NICK, (nick,), now_ms=now_ms)

    def new_join(self, *, now_ms: int) -> Op:
        return self.create(Kind.JOIN, (), now_ms=now_ms)

    def new_leave(self, *, now_ms: int) -> Op:
        return self.create(Kind.LEAVE, (), now_ms=now_ms)

    # -- views ------------------------------------------------------------------------------

    def timeline(self) -> list[Message]:
        """Every message in (hlc, author, seq) order, as it stands now."""
        return [self._snapshot(key[3]) for key in self._timeline]

    def page(
        self, *, before: bytes | None = None, before_ms: int | None = None, limit: int = 100
    ) -> list[Message]:
        """Up to `limit` messages in timeline order: the newest older than message `before`
        (or than wall-clock time `before_ms`), else the newest of all. An unknown `before`
        gives none."""
        end = len(self._timeline)
        if before is not None:
            op = self._ops.get(before)
            if op is None or op.kind != Kind.MESSAGE or not self.in_effect(before):
                return []
            end = bisect.bisect_left(self._timeline, op.sort_key)
        elif before_ms is not None:
            end = bisect.bisect_left(self._timeline, make_hlc(before_ms), key=lambda k: k[0])
        return [self._snapshot(key[3]) for key in self._timeline[max(0, end - limit) : end]]

    @property
    def message_count(self) -> int:
        """Messages in the timeline, deleted ones included."""
        return len(self._timeline)

    def message(self, op_id: bytes) -> Message | None:
        op = self._ops.get(op_id)
        if op is None or op.kind != Kind.MESSAGE or op_id not in self._effect_index:
            return None
        return self._snapshot(op_id)

    def _snapshot(self, op_id: bytes) -> Message:
        op = self._ops[op_id]
        edit = self._edits.get(op_id)
        deleted = op_id in self._deleted
        reactions: tuple[tuple[str, tuple[bytes, ...]], ...] = ()
        slots = self._reactions.get(op_id)
        if not deleted and slots:
            by_emoji: dict[str, list[bytes]] = {}
            for (author, emoji), (_, present) in slots.items():
                if present:
                    by_emoji.setdefault(emoji, []).append(author)
            reactions = tuple((e, tuple(sorted(a))) for e, a in sorted(by_emoji.items()))
        return Message(
            id=op_id,
            author=op.author,
            seq=op.seq,
            hlc=op.hlc,
            text="" if deleted else (op.body[0] if edit is None else edit[1]),
            reply_to=op.body[1],
            edited=edit is not None,
            deleted=deleted,
            reactions=reactions,
        )

    @property
    def topic(self) -> str:
        return "" if self._topic is None else self._topic[1]

    def nicknames(self) -> dict[bytes, str]:
        return {author: nick for author, (_, nick) in self._nicks.items() if nick}

    def nick(self, author: bytes) -> str | None:
        entry = self._nicks.get(author)
        return entry[1] or None if entry is not None else None

    def members(self) -> list[bytes]:
        """Authors whose latest join or leave is a join, sorted."""
        return sorted(a for a, (_, joined) in self._membership.items() if joined)

    def forked_authors(self) -> list[bytes]:
        return sorted(a for a, chain in self._chains.items() if chain.forks)

    def fork_seq(self, author: bytes) -> int | None:
        """The lowest seq at which `author`'s chain holds two ops, or None."""
        chain = self._chains.get(author)
        if chain is None or not chain.forks:
            return None
        return min(chain.forks)

    def fork_ops(self, limit: int | None = None) -> list[Op]:
        """Every op of a forked chain from its first fork on, in the order they took effect.

        A version vector counts seqs, so it cannot show which of two twins a peer holds:
        these are the ops a peer whose vector looks complete may still lack.
        """
        runs: list[Iterator[tuple[int, Op]]] = []
        for chain in self._chains.values():
            if chain.forks:
                first = min(chain.forks)
                runs.append(
                    (i, op)
                    for i, op in zip(chain.indexes, chain.ops, strict=True)
                    if op.seq >= first
                )
        merged = (op for _, op in heapq.merge(*runs, key=lambda entry: entry[0]))
        if limit is None:
            return list(merged)
        return [op for _, op in zip(range(limit), merged, strict=False)]

    def get(self, op_id: bytes) -> Op | None:
        return self._find(op_id)

    def in_effect(self, op_id: bytes) -> bool:
        return op_id in self._effect_index

    def __contains__(self, op_id: object) -> bool:
        return isinstance(op_id, bytes) and self._known(op_id)

    def known_ops(self, ops: list[Op]) -> set[bytes]:
        """The ids of `ops` that are here (in effect or held)."""
        return {op.id for op in ops if self._known(op.id)}

    def __len__(self) -> int:
        """Accepted ops, held ones included."""
        return len(self._ops) + len(self._held)

    @property
    def held_count(self) -> int:
        return len(self._held)

    def head(self, author: bytes) -> int:
        chain = self._chains.get(author)
        return 0 if chain is None else chain.head

    # -- sync -------------------------------------------------------------------------------

    def version_vector(self) -> dict[bytes, int]:
        """Per author, the highest seq up to which every op has taken effect here."""
        return {author: chain.head for author, chain in self._chains.items()}

    def missing_for(
        self, version_vector: Mapping[bytes, int], limit: int | None = None
    ) -> list[Op]:
        """The ops in effect here beyond `version_vector`, in an order where each op comes
        after its chain predecessor and its target (so the receiver never holds them)."""
        # Lazy runs: a sync batch asks for a few hundred ops of a history that may hold
        # millions, so nothing is copied beyond what is taken.
        runs: list[Iterator[tuple[int, Op]]] = []
        for author, chain in self._chains.items():
            have = max(0, version_vector.get(author, 0))
            if chain.head <= have:
                continue
            if not chain.forks:
                # One op per seq, taking effect in seq order: seq n sits at position n - 1.
                runs.append(_positions(chain, have))
            else:
                runs.append(
                    (i, op) for i, op in zip(chain.indexes, chain.ops, strict=True) if op.seq > have
                )
        merged = (op for _, op in heapq.merge(*runs, key=lambda entry: entry[0]))
        if limit is None:
            return list(merged)
        return [op for _, op in zip(range(limit), merged, strict=False)]

    def missing_wire(
        self, version_vector: Mapping[bytes, int], limit: int | None = None
    ) -> list[tuple[bytes, int, bytes]]:
        """`missing_for` as (author, seq, wire form): all a catch-up batch sends."""
        return [(op.author, op.seq, op.data) for op in self.missing_for(version_vector, limit)]

    def ops(self) -> Iterable[Op]:
        """Every accepted op, held ones included, in no particular order."""
        return [*self._ops.values(), *self._held_ops.values()]

    # -- canonical form -----------------------------------------------------------------------

    def render(self) -> bytes:
        """The views as canonical bytes: equal exactly when two replicas show the same room."""
        return render_views(self)
