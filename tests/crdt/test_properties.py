"""CRDT laws, checked with hypothesis on random histories of several authors.

Every permutation and duplication of delivery gives the same views (compared through the
canonical rendering, byte for byte); applying is idempotent; and the views agree with a
small reference model written straight from the rules, independent of the replica's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdt import Kind, Op, Outcome, Replica, encode_op

from .conftest import ROOM, T0, identity

Views = tuple[list[tuple[Any, ...]], str, dict[bytes, str], list[bytes]]
AUTHORS = 3
ROGUE = 3  # an author whose client breaks the rules: it edits and deletes others' messages
EMOJI = ["👍", "🎉", "❤️"]
NICKS = ["ann", "bo", "cy", ""]


@dataclass(frozen=True)
class Action:
    author: int
    kind: str
    pick: int  # which earlier message an edit, delete or reaction aims at
    wall: int  # the author's wall clock, in ms after T0 (clocks disagree and step back)
    synced: bool  # whether the author saw everything sent so far before acting


actions = st.lists(
    st.builds(
        Action,
        author=st.integers(0, AUTHORS),
        kind=st.sampled_from(
            [
                "message",
                "message",
                "edit",
                "delete",
                "react",
                "unreact",
                "topic",
                "nick",
                "join",
                "leave",
            ]
        ),
        pick=st.integers(0, 50),
        wall=st.integers(0, 30),
        synced=st.booleans(),
    ),
    min_size=1,
    max_size=24,
)


def build_history(plan: list[Action]) -> list[Op]:
    """Ops written by authors who act on what they have seen so far."""
    sent: list[Op] = []
    views = [Replica(ROOM, identity=identity(n)) for n in range(AUTHORS)]
    seen = [0] * AUTHORS  # how many of `sent` each author has applied
    rogue_prev: Op | None = None
    for action in plan:
        now = T0 + action.wall
        if action.author == ROGUE:
            op = rogue_op(action, sent, rogue_prev)
            if op is not None:
                rogue_prev = op
                sent.append(op)
            continue
        view = views[action.author]
        if action.synced:
            for op in sent[seen[action.author] :]:
                view.apply(op.data)
            seen[action.author] = len(sent)
        messages = view.timeline()
        mine = [m for m in messages if m.author == view.identity.peer_id]  # type: ignore[union-attr]
        kind = action.kind
        if (
            kind == "message"
            or (kind in ("edit", "delete") and not mine)
            or (kind in ("react", "unreact") and not messages)
        ):
            op = view.new_message(f"m{len(sent)}", now_ms=now)
        elif kind == "edit":
            op = view.new_edit(mine[action.pick % len(mine)].id, f"e{len(sent)}", now_ms=now)
        elif kind == "delete":
            op = view.new_delete(mine[action.pick % len(mine)].id, now_ms=now)
        elif kind in ("react", "unreact"):
            target = messages[action.pick % len(messages)].id
            emoji = EMOJI[action.pick % len(EMOJI)]
            op = view.new_reaction(target, emoji, now_ms=now, remove=kind == "unreact")
        elif kind == "topic":
            op = view.new_topic(f"t{len(sent)}", now_ms=now)
        elif kind == "nick":
            op = view.new_nick(NICKS[action.pick % len(NICKS)], now_ms=now)
        else:
            op = view.new_join(now_ms=now) if kind == "join" else view.new_leave(now_ms=now)
        assert view.admit(op).outcome is Outcome.ADDED
        sent.append(op)
    return sent


def rogue_op(action: Action, sent: list[Op], prev: Op | None) -> Op | None:
    """A correctly chained and signed op that edits or deletes someone else's message, or
    a plain message; ops after a refused one can never take effect."""
    seq = 1 if prev is None else prev.seq + 1
    hlc = ((T0 + 100 + seq) << 16) if prev is None else prev.hlc + 1
    others = [op for op in sent if op.kind == Kind.MESSAGE and op.author != identity(ROGUE).peer_id]
    me = identity(ROGUE)
    common = {"room": ROOM, "seq": seq, "prev": None if prev is None else prev.id, "hlc": hlc}
    if action.kind in ("edit", "delete") and others:
        target = others[action.pick % len(others)].id
        if action.kind == "edit":
            return encode_op(me, kind=Kind.EDIT, body=(target, "hijacked"), **common)  # type: ignore[arg-type]
        return encode_op(me, kind=Kind.DELETE, body=(target,), **common)  # type: ignore[arg-type]
    return encode_op(me, kind=Kind.MESSAGE, body=(f"rogue {seq}", None), **common)  # type: ignore[arg-type]


# -- the reference model ----------------------------------------------------------------------


def model_views(
    ops: list[Op],
) -> Views:
    """The views, computed directly from the rules over the set of ops."""
    by_id = {op.id: op for op in ops}
    effective: set[bytes] = set()
    grew = True
    while grew:
        grew = False
        for op in ops:
            if op.id not in effective and can_take_effect(op, by_id, effective):
                effective.add(op.id)
                grew = True
    live = sorted((by_id[i] for i in effective), key=lambda op: op.sort_key)

    def latest(candidates: list[Op]) -> Op | None:
        return max(candidates, key=lambda op: op.sort_key, default=None)

    timeline = []
    for message in (op for op in live if op.kind == Kind.MESSAGE):
        aimed = [op for op in live if op.target == message.id]
        text_op = latest([message] + [op for op in aimed if op.kind == Kind.EDIT])
        assert text_op is not None
        deleted = any(op.kind == Kind.DELETE for op in aimed)
        reactions: dict[str, list[bytes]] = {}
        slots = {(op.author, op.body[1]) for op in aimed if op.kind in (Kind.REACT, Kind.UNREACT)}
        for author, emoji in slots:
            last = latest(
                [
                    op
                    for op in aimed
                    if op.kind in (Kind.REACT, Kind.UNREACT)
                    and (op.author, op.body[1]) == (author, emoji)
                ]
            )
            if last is not None and last.kind == Kind.REACT:
                reactions.setdefault(emoji, []).append(author)
        shown = (
            () if deleted else tuple((e, tuple(sorted(a))) for e, a in sorted(reactions.items()))
        )
        text = "" if deleted else (text_op.body[0] if text_op is message else text_op.body[1])
        timeline.append((message.id, text, text_op is not message, deleted, shown))
    topic_op = latest([op for op in live if op.kind == Kind.TOPIC])
    nicks: dict[bytes, str] = {}
    members: list[bytes] = []
    for author in {op.author for op in live}:
        nick = latest([op for op in live if op.author == author and op.kind == Kind.NICK])
        if nick is not None and nick.body[0]:
            nicks[author] = nick.body[0]
        presence = latest(
            [op for op in live if op.author == author and op.kind in (Kind.JOIN, Kind.LEAVE)]
        )
        if presence is not None and presence.kind == Kind.JOIN:
            members.append(author)
    return timeline, "" if topic_op is None else topic_op.body[0], nicks, sorted(members)


def can_take_effect(op: Op, by_id: dict[bytes, Op], effective: set[bytes]) -> bool:
    if op.prev is not None:
        prev = by_id.get(op.prev)
        if prev is None or prev.id not in effective:
            return False
        if prev.author != op.author or prev.seq != op.seq - 1 or prev.hlc >= op.hlc:
            return False
    if op.target is not None:
        target = by_id.get(op.target)
        if target is None or target.id not in effective or target.kind != Kind.MESSAGE:
            return False
        if op.kind in (Kind.EDIT, Kind.DELETE) and target.author != op.author:
            return False
    return True


def replica_views(
    replica: Replica,
) -> Views:
    timeline = [(m.id, m.text, m.edited, m.deleted, m.reactions) for m in replica.timeline()]
    return timeline, replica.topic, replica.nicknames(), replica.members()


# -- the laws ---------------------------------------------------------------------------------


def deliver(ops: list[Op]) -> Replica:
    replica = Replica(ROOM)
    for op in ops:
        replica.apply(op.data, now_ms=T0)
    return replica


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(plan=actions, data=st.data())
def test_any_delivery_order_and_duplication_gives_the_same_views(
    plan: list[Action], data: st.DataObject
) -> None:
    ops = build_history(plan)
    in_order = deliver(ops)
    shuffled = data.draw(st.permutations(ops))
    repeats = data.draw(st.lists(st.sampled_from(ops), max_size=len(ops)))
    mixed = list(shuffled)
    for op in repeats:  # duplicates land anywhere, before or after the original
        mixed.insert(data.draw(st.integers(0, len(mixed))), op)
    reference = in_order.render()
    assert deliver(mixed).render() == reference
    assert deliver(list(reversed(ops))).render() == reference
    assert replica_views(in_order) == model_views(ops)


@SETTINGS
@given(plan=actions)
def test_applying_again_changes_nothing(plan: list[Action]) -> None:
    ops = build_history(plan)
    replica = deliver(ops)
    before, size = replica.render(), len(replica)
    for op in ops:
        assert replica.apply(op.data).outcome in (Outcome.DUPLICATE, Outcome.REJECTED)
    assert replica.render() == before
    assert len(replica) == size


@SETTINGS
@given(plan=actions, data=st.data())
def test_sync_by_version_vector_converges(plan: list[Action], data: st.DataObject) -> None:
    """Two replicas holding different parts of a history exchange `missing_for` each
    other's version vectors and end up with the same views as one that got everything."""
    ops = build_history(plan)
    split = data.draw(st.lists(st.booleans(), min_size=len(ops), max_size=len(ops)))
    left = deliver([op for op, side in zip(ops, split, strict=True) if side])
    right = deliver([op for op, side in zip(ops, split, strict=True) if not side])
    everything = deliver(ops)
    # Rounds each way until nothing moves; ops held on one side are released as the
    # other side fills their gaps, so every round makes progress.
    for _ in range(len(ops) + 1):
        to_right = left.missing_for(right.version_vector())
        to_left = right.missing_for(left.version_vector())
        if not to_right and not to_left:
            break
        for op in to_right:
            right.apply(op.data)
        for op in to_left:
            left.apply(op.data)
    assert left.render() == right.render() == everything.render()


@settings(max_examples=300, deadline=None)
@given(plan=actions, data=st.data())
def test_hostile_bytes_never_raise_and_never_change_the_views(
    plan: list[Action], data: st.DataObject
) -> None:
    """Mutated, truncated and spliced ops: apply answers with a result, never an exception,
    and anything not added leaves the replica exactly as it was."""
    ops = build_history(plan)
    replica = deliver(ops)
    for _ in range(5):
        victim = bytearray(data.draw(st.sampled_from(ops)).data)
        for _ in range(data.draw(st.integers(1, 3))):
            victim[data.draw(st.integers(0, len(victim) - 1))] = data.draw(st.integers(0, 255))
        if data.draw(st.booleans()):
            victim = victim[: data.draw(st.integers(0, len(victim)))]
        before, size = replica.render(), len(replica)
        result = replica.apply(bytes(victim), now_ms=T0)
        if result.outcome is not Outcome.ADDED:
            assert replica.render() == before
            assert len(replica) == size
