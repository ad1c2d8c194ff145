"""The pure peering core: exact actions and timers for dialing, retries, the breaker, the
tie-break, the mesh and the discovery schedule."""

from __future__ import annotations

import random

import pytest

from node._backoff import Backoff
from node._peering import (
    Announce,
    Dial,
    Lookup,
    Peering,
    PeeringConfig,
    keep_existing,
)

ME = b"\x50" * 32
LOW, HIGH = b"\x10" * 32, b"\x90" * 32
ROOM = b"\x01" * 32
A, B, C = "10.0.0.1:4000", "10.0.0.2:4000", "10.0.0.3:4000"


def core(seed: int = 1, **config: float) -> Peering:
    return Peering(ME, rng=random.Random(seed), config=PeeringConfig(**config))  # type: ignore[arg-type]


def delays(seed: int, n: int, base: float = 1.0, cap: float = 300.0) -> list[float]:
    """The backoff delays a core seeded with `seed` draws (its rng's first draws)."""
    rng, backoff = random.Random(seed), Backoff(base=base, cap=cap)
    return [backoff.next_delay(rng) for _ in range(n)]


def test_wanted_addresses_are_dialed_at_once_and_only_once() -> None:
    p = core()
    p.own_address = C
    assert p.want([A, B, A, C], now=0.0) == [Dial(A), Dial(B)]  # never our own address
    assert p.want([A], now=1.0) == []
    assert p.next_timer() is None


def test_a_failed_dial_is_retried_after_a_jittered_backoff() -> None:
    p = core(seed=3)
    assert p.want([A], now=0.0) == [Dial(A)]
    expected = delays(3, 2)
    assert p.dial_failed(A, now=0.0) == []
    assert p.next_timer() == expected[0]
    assert p.handle_timer(expected[0] - 0.001) == []
    assert p.handle_timer(expected[0]) == [Dial(A)]
    p.dial_failed(A, now=10.0)
    assert p.next_timer() == 10.0 + expected[1]


def test_a_link_that_ends_is_dialed_again_after_a_reset_backoff() -> None:
    p = core(seed=5)
    p.want([A], now=0.0)
    p.dial_failed(A, now=0.0)
    p.handle_timer(100.0)
    assert p.dialed(A, LOW, now=100.0) == []
    assert p.next_timer() is None  # linked: nothing to do
    p.link_ended(A, now=200.0)
    # The backoff was reset by the success: the next delay is drawn from base again.
    rng = random.Random(5)
    Backoff().next_delay(rng)  # the failure's draw
    assert p.next_timer() == 200.0 + Backoff().next_delay(rng)


def test_the_breaker_opens_after_five_failures_and_lets_one_trial_through() -> None:
    p = core(seed=2, dial_backoff=0.001, backoff_cap=0.001)
    assert p.want([A], now=0.0) == [Dial(A)]
    now = 0.0
    for failure in range(1, 6):
        p.dial_failed(A, now)
        failed_at = now
        retry = p.next_timer()
        assert retry is not None and retry <= now + 0.001
        now = retry
        if failure < 5:
            assert p.handle_timer(now) == [Dial(A)]
    assert p.handle_timer(now) == []  # the fifth failure opened the breaker
    assert p.address_state(A) == (None, 5, True)
    assert p.next_timer() == failed_at + 60.0
    assert p.handle_timer(failed_at + 60.0) == [Dial(A)]  # the half-open trial
    p.dialed(A, LOW, failed_at + 61.0)
    assert p.address_state(A) == (LOW, 0, False)


def test_an_address_whose_peer_is_linked_waits_for_that_link_to_end() -> None:
    p = core()
    p.link_up(LOW, now=0.0)  # LOW dialed us
    assert p.want([A], now=1.0, peer_id=LOW) == []
    assert p.next_timer() is None
    assert p.link_down(LOW, now=5.0) == [Dial(A, LOW)]  # only LOW may answer there


def test_our_own_address_coming_back_is_never_dialed_again() -> None:
    p = core()
    p.want([A], now=0.0)
    p.dialed(A, ME, now=0.1)
    assert p.dialing() == []
    p.link_ended(A, now=1.0)
    assert p.next_timer() is None


def test_a_bad_address_is_dropped_for_good() -> None:
    p = core()
    p.want([A], now=0.0)
    p.dial_failed(A, now=0.0, for_good=True)
    assert p.dialing() == [] and p.next_timer() is None


@pytest.mark.parametrize(
    ("existing", "new", "keep"),
    [
        # Both sides keep the link the lower peer id dialed.
        ((True, HIGH), (False, HIGH), True),  # we (lower) dialed the old one: keep it
        ((False, LOW), (True, LOW), True),  # LOW dialed the old one: keep it
        ((True, LOW), (False, LOW), False),  # LOW dialed the new one: take it
    ],
)
def test_the_tie_break_keeps_the_link_the_lower_id_dialed(
    existing: tuple[bool, bytes], new: tuple[bool, bytes], keep: bool
) -> None:
    assert keep_existing(ME, existing, new) is keep
    # The other end, seeing the same two links, keeps the same one.
    peer = existing[1]
    mirrored_existing, mirrored_new = (not existing[0], ME), (not new[0], ME)
    assert keep_existing(peer, mirrored_existing, mirrored_new) is keep


def test_discovery_starts_once_the_dht_is_ready_and_repeats_each_interval() -> None:
    p = core(discovery_interval=60.0, record_ttl=3600.0)
    assert p.room_started(ROOM, now=0.0, announce=True) == []
    assert p.dht_ready(now=2.0) == [Announce(ROOM, 3600.0), Lookup(ROOM)]
    assert p.next_timer() is None  # the round runs; `found` schedules the next
    p.announced(ROOM, now=2.5, ttl=3600.0)
    assert p.found(ROOM, [], [], now=3.0) == []
    assert p.next_timer() == 63.0
    # Within the first half of the record's life: look, do not announce again.
    assert p.handle_timer(63.0) == [Lookup(ROOM)]
    p.found(ROOM, [], [], now=63.0)
    later = 2.5 + 1800.0 + 1.0
    assert p.handle_timer(later) == [Announce(ROOM, 3600.0), Lookup(ROOM)]


def test_a_room_that_cannot_announce_only_looks() -> None:
    p = core()
    p.dht_ready(now=0.0)
    assert p.room_started(ROOM, now=1.0, announce=False) == [Lookup(ROOM)]


def test_a_stopped_room_has_no_more_rounds() -> None:
    p = core()
    p.dht_ready(now=0.0)
    p.room_started(ROOM, now=0.0, announce=False)
    p.found(ROOM, [], [], now=1.0)
    p.room_stopped(ROOM)
    assert p.next_timer() is None
    assert p.found(ROOM, [(LOW, [A])], [], now=2.0) == []


def test_the_mesh_dials_members_until_full_counting_links_to_us() -> None:
    p = core(seed=4, mesh_size=2)
    p.dht_ready(now=0.0)
    p.room_started(ROOM, now=0.0, announce=False)
    members = [(LOW, [A]), (HIGH, [B]), (b"\x33" * 32, [C]), (ME, ["10.9.9.9:1"])]
    # One member (not among these) dialed us already: room for one more.
    actions = p.found(ROOM, members, [b"\x77" * 32], now=1.0)
    assert len(actions) == 1 and isinstance(actions[0], Dial)
    assert len(p.dialed_in(ROOM)) == 1
    # The next round adds none: the mesh is full.
    assert p.found(ROOM, members, [b"\x77" * 32], now=61.0) == []


def test_a_room_whose_mesh_is_full_looks_four_times_rarer_until_it_runs_short() -> None:
    p = core(seed=4, mesh_size=2, discovery_interval=60.0)
    p.dht_ready(now=0.0)
    p.room_started(ROOM, now=0.0, announce=False)
    linked = [b"\x77" * 32, b"\x78" * 32]
    assert p.found(ROOM, [(LOW, [A])], linked, now=1.0) == []
    assert p.next_timer() == 241.0
    # A link goes and no record names anyone to replace it: the next round is the usual.
    assert p.members(ROOM, [], linked[:1], now=10.0) == []
    assert p.next_timer() == 70.0
    assert p.handle_timer(70.0) == [Lookup(ROOM)]
    # Short of members: the next round follows the usual interval.
    p.found(ROOM, [], linked[:1], now=70.0)
    assert p.next_timer() == 130.0


def test_a_room_dials_its_newest_remembered_addresses_and_keeps_the_rest_as_spares() -> None:
    p = core(mesh_size=2)
    p.room_started(ROOM, now=0.0, announce=False)
    remembered = [f"10.0.2.{i}:1" for i in range(1, 6)]  # newest last
    assert p.remembered(ROOM, remembered, now=0.0) == [Dial(remembered[3]), Dial(remembered[4])]
    # While those two are being dialed, the room is not short: no spare, no member.
    assert p.members(ROOM, [(LOW, [A])], [], now=1.0) == []
    # One fails for good: the newest spare takes its place, before any record's member.
    p.dial_failed(remembered[4], now=2.0, for_good=True)
    assert p.members(ROOM, [], [], now=2.0) == [Dial(remembered[2])]
    # One is linked: it counts as a link now; the other still dials.
    p.dialed(remembered[3], LOW, now=3.0)
    p.link_up(LOW, now=3.0)
    assert p.members(ROOM, [(HIGH, [B])], [LOW], now=3.0) == []


def test_a_small_remembered_list_is_dialed_whole() -> None:
    p = core(mesh_size=6)
    p.room_started(ROOM, now=0.0, announce=False)
    assert p.remembered(ROOM, [A, B, A], now=0.0) == [Dial(A), Dial(B)]


def test_the_same_seed_chooses_the_same_mesh() -> None:
    members = [(bytes([i]) * 32, [f"10.0.1.{i}:1"]) for i in range(1, 20)]

    def chosen(seed: int) -> list[Dial | Announce | Lookup]:
        p = core(seed=seed, mesh_size=3)
        p.dht_ready(now=0.0)
        p.room_started(ROOM, now=0.0, announce=False)
        return p.found(ROOM, members, [], now=1.0)

    assert chosen(9) == chosen(9)
    assert len(chosen(9)) == 3
    assert {tuple(chosen(s)) for s in range(6)} != {tuple(chosen(9))}


def test_signed_member_addresses_are_dialed_expecting_their_signer() -> None:
    p = core(seed=2, mesh_size=6)
    p.room_started(ROOM, now=0.0, announce=False)  # no DHT: no rounds, no timers
    p.want([C], now=0.0)  # an invite's address: whoever answers
    assert p.next_timer() is None
    actions = p.members(ROOM, [(LOW, [A]), (HIGH, [B]), (ME, ["10.9.9.9:1"])], [], now=1.0)
    assert sorted(actions, key=str) == [Dial(A, LOW), Dial(B, HIGH)]
    assert p.next_timer() is None  # the discovery schedule is untouched
    # Someone else proved at A: a failed dial, retried (still expecting LOW).
    p.dial_failed(A, now=1.0)
    due = p.next_timer()
    assert due is not None and p.handle_timer(due) == [Dial(A, LOW)]


def test_a_member_whose_link_goes_is_dialed_again_from_its_record() -> None:
    p = core(mesh_size=6)
    p.room_started(ROOM, now=0.0, announce=False)
    p.link_up(LOW, now=0.0)  # LOW dialed us; its record names A
    assert p.members(ROOM, [(LOW, [A])], [LOW], now=1.0) == []  # linked already
    p.link_down(LOW, now=2.0)
    assert p.members(ROOM, [(LOW, [A])], [], now=2.0) == [Dial(A, LOW)]


def test_a_mesh_member_gone_behind_its_breaker_makes_room_for_another() -> None:
    p = core(mesh_size=1)
    p.room_started(ROOM, now=0.0, announce=False)
    members = [(LOW, [A])]
    assert p.members(ROOM, members, [], now=0.0) == [Dial(A, LOW)]
    assert p.members(ROOM, [*members, (HIGH, [B])], [], now=0.0) == []  # full: LOW
    now = 0.0
    while not p.address_state(A)[2]:  # type: ignore[index]
        p.dial_failed(A, now=now)
        due = p.next_timer()
        assert due is not None
        now = due
        p.handle_timer(now)
    # The mesh of one is full while LOW is still worth dialing; not once its breaker opens.
    assert p.members(ROOM, [*members, (HIGH, [B])], [], now=now) == [Dial(B, HIGH)]


def test_members_of_a_room_not_served_are_not_dialed() -> None:
    p = core()
    assert p.members(ROOM, [(LOW, [A])], [], now=1.0) == []


def test_the_own_chain_grace() -> None:
    p = core(own_chain_grace=10.0)
    assert p.settles_at(5.0) == 15.0
    assert not p.settled(5.0, now=14.999)
    assert p.settled(5.0, now=15.0)
