"""A peer's `Seqs` (what we believe it holds, per author) behaves as the dict it stands for."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.gossip._peer import Authors, Seqs

KEYS = [bytes([n]) * 32 for n in range(6)]

steps = st.lists(
    st.one_of(
        st.tuples(st.just("number"), st.sampled_from(KEYS), st.just(0)),
        st.tuples(st.just("set"), st.sampled_from(KEYS), st.integers(1, (1 << 63) - 1)),
    ),
    max_size=40,
)


@given(steps)
def test_seqs_read_as_a_dict_whenever_authors_get_their_numbers(
    script: list[tuple[str, bytes, int]],
) -> None:
    authors = Authors()
    seqs, other = Seqs(authors), Seqs(authors)  # two peers share the room's numbers
    model: dict[bytes, int] = {}
    for action, author, seq in script:
        if action == "number":
            authors.add(author)
        else:
            seqs[author] = seq
            model[author] = seq
        assert dict(seqs.items()) == model and len(seqs) == len(model)
        assert all(seqs.get(key, -1) == model.get(key, -1) for key in KEYS)
        assert all((key in seqs) == (key in model) for key in KEYS)
    assert len(other) == 0 and other.get(KEYS[0]) == 0


def test_numbered_authors_are_kept_as_one_key_object_and_unknown_ones_as_given() -> None:
    authors = Authors()
    first = bytes(KEYS[1])
    assert authors.add(first) is first
    copy = bytes(bytearray(first))  # an equal key decoded from another message
    assert copy is not first and authors.add(copy) is first and authors.key(copy) is first
    stranger = bytes(bytearray(KEYS[2]))
    assert authors.key(stranger) is stranger
    seqs = Seqs(authors)
    seqs[copy] = 3
    seqs[stranger] = 1
    assert next(key for key in seqs if key == first) is first
    assert seqs[first] == 3 and seqs[KEYS[2]] == 1
    with pytest.raises(KeyError):
        seqs[KEYS[3]]
    with pytest.raises(ValueError, match="at least 1"):
        seqs[first] = 0
