"""What a replica shows and what changed: immutable snapshots and change events."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

import msgpack

from ._op import Op, Reason

__all__ = [
    "ApplyResult",
    "AuthorForked",
    "Change",
    "IngestReport",
    "MemberJoined",
    "MemberLeft",
    "Message",
    "MessageAdded",
    "MessageChanged",
    "NickChanged",
    "OpDropped",
    "Outcome",
    "TopicChanged",
    "message_row",
]


@dataclass(frozen=True, slots=True)
class Message:
    """One message of the timeline as it stands now."""

    id: bytes
    author: bytes
    seq: int
    hlc: int
    text: str  # the latest edit's text; empty once deleted
    reply_to: bytes | None
    edited: bool
    deleted: bool
    # (emoji, authors who reacted with it), both sorted; empty once deleted
    reactions: tuple[tuple[str, tuple[bytes, ...]], ...]


def message_row(m: Message) -> list[object]:
    """A message as a plain list, in the canonical order renders and digests use."""
    return [
        m.id,
        m.author,
        m.seq,
        m.hlc,
        m.text,
        m.reply_to,
        m.edited,
        m.deleted,
        [[e, list(a)] for e, a in m.reactions],
    ]


class Viewable(Protocol):
    """What `render_views` reads: a replica, kept in memory or in its file."""

    room: bytes

    @property
    def topic(self) -> str: ...

    def timeline(self) -> list[Message]: ...

    def nicknames(self) -> dict[bytes, str]: ...

    def members(self) -> list[bytes]: ...

    def forked_authors(self) -> list[bytes]: ...

    def version_vector(self) -> dict[bytes, int]: ...


def render_views(replica: Viewable) -> bytes:
    """A replica's views as canonical bytes: equal exactly when two replicas show the same
    room, however each keeps it."""
    rendered: bytes = msgpack.packb(
        [
            replica.room,
            [message_row(m) for m in replica.timeline()],
            replica.topic,
            sorted(replica.nicknames().items()),
            replica.members(),
            replica.forked_authors(),
            sorted(replica.version_vector().items()),
        ]
    )
    return rendered


# -- change events: what `apply` changed in the views -------------------------------------


@dataclass(frozen=True, slots=True)
class MessageAdded:
    id: bytes


@dataclass(frozen=True, slots=True)
class MessageChanged:
    """A message's text, deleted flag or reactions changed."""

    id: bytes


@dataclass(frozen=True, slots=True)
class TopicChanged:
    topic: str
    author: bytes


@dataclass(frozen=True, slots=True)
class NickChanged:
    author: bytes
    nick: str


@dataclass(frozen=True, slots=True)
class MemberJoined:
    author: bytes


@dataclass(frozen=True, slots=True)
class MemberLeft:
    author: bytes


@dataclass(frozen=True, slots=True)
class AuthorForked:
    """Two different ops with the same author and seq: the author's chain has forked."""

    author: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class OpDropped:
    """An op that was held waiting for another turned out invalid once that one arrived."""

    id: bytes
    reason: Reason


Change = (
    MessageAdded
    | MessageChanged
    | TopicChanged
    | NickChanged
    | MemberJoined
    | MemberLeft
    | AuthorForked
    | OpDropped
)


class Outcome(enum.Enum):
    ADDED = "added"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What `Replica.apply` did with one op.

    An ADDED op with `waiting_for` set is kept but not yet shown: it waits for that op (its
    chain predecessor or its target) and takes effect when it arrives.
    """

    outcome: Outcome
    id: bytes | None = None  # None only when the bytes did not even decode
    reason: Reason | None = None
    waiting_for: bytes | None = None
    changes: tuple[Change, ...] = ()

    @property
    def added(self) -> bool:
        return self.outcome is Outcome.ADDED


@dataclass(slots=True)
class IngestReport:
    """What `History.ingest` did with a batch: compact, since batches are large."""

    outcomes: list[Outcome]  # one per op of the batch, in batch order
    reasons: dict[int, Reason]  # batch index -> why that op was refused
    added: list[Op]  # the ops newly accepted (in effect or held), in the order applied
    changes: list[Change] = field(default_factory=list)  # what changed in the views
    # held op id -> the op it waits for (its chain predecessor or its target), worth pulling
    waiting_for: dict[bytes, bytes] = field(default_factory=dict)

    def count(self, outcome: Outcome) -> int:
        return self.outcomes.count(outcome)

    @property
    def rejected(self) -> dict[Reason, int]:
        """How many ops were refused, by reason."""
        counts: dict[Reason, int] = {}
        for reason in self.reasons.values():
            counts[reason] = counts.get(reason, 0) + 1
        return counts
