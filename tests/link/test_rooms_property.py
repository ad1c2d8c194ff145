"""Room authorization under every interleaving of joins and deliveries (hypothesis).

Two sessions join rooms with chosen secrets while messages cross in either direction at
arbitrary moments (each direction stays in order, as on a WebSocket). However it
interleaves, once everything is delivered: a room is authorized on both sides exactly when
both joined it with the same secret, a room joined with different secrets is refused on
at least one side and authorized on neither, and no step ever raises.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import SECRET_A, SECRET_B, converse, established, pump

ROOMS = [bytes([n]) * 32 for n in range(3)]
SECRETS = [SECRET_A, SECRET_B]

_step = st.one_of(
    st.tuples(st.sampled_from(["join-a", "join-b"]), st.integers(0, 2)),
    st.tuples(st.sampled_from(["a->b", "b->a"]), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_step, max_size=24),
    st.lists(st.integers(0, 1), min_size=3, max_size=3),
    st.lists(st.integers(0, 1), min_size=3, max_size=3),
)
def test_rooms_converge_for_any_interleaving(
    steps: list[tuple[str, int]], secrets_a: list[int], secrets_b: list[int]
) -> None:
    a, b = established()
    joined_a: set[int] = set()
    joined_b: set[int] = set()
    for action, room in steps:
        if action == "join-a":
            a.join_room(ROOMS[room], SECRETS[secrets_a[room]])
            joined_a.add(room)
        elif action == "join-b":
            b.join_room(ROOMS[room], SECRETS[secrets_b[room]])
            joined_b.add(room)
        elif action == "a->b":
            pump(a, b)
        else:
            pump(b, a)
    converse(a, b, rounds=6)
    for room in range(3):
        both = room in joined_a and room in joined_b
        same = secrets_a[room] == secrets_b[room]
        rid = ROOMS[room]
        assert (rid in a.rooms) == (rid in b.rooms) == (both and same), room
        if both and not same:
            assert rid in a.refused_rooms | b.refused_rooms
        if not both:
            assert rid not in a.refused_rooms | b.refused_rooms
    assert a.is_established and b.is_established
