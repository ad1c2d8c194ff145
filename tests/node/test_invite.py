"""Invite URIs: round trip, and a one-line InviteError for anything else."""

from __future__ import annotations

import base64
import os

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node._invite import PREFIX, Invite, InviteError, _checksum, parse_invite

ROOM, SECRET = os.urandom(32), os.urandom(32)


def test_round_trip() -> None:
    invite = Invite(ROOM, SECRET, "weekend plans", ("192.0.2.7:4433", "[2001:db8::1]:80",
                                                    "wss://chat.example.org:443/rumor"))
    uri = invite.to_uri()
    assert uri.startswith(PREFIX)
    assert uri == uri.lower()
    assert parse_invite(f"  {uri}\n") == invite
    assert parse_invite(uri.upper().replace(PREFIX.upper(), PREFIX)) == invite


def test_repr_hides_the_secret() -> None:
    invite = Invite(ROOM, SECRET)
    assert SECRET.hex() not in repr(invite)
    assert base64.b32encode(SECRET).decode() not in repr(invite)


def encode(fields: object) -> str:
    body = msgpack.packb(fields)
    data = body + _checksum(body)
    return PREFIX + base64.b32encode(data).decode().rstrip("=").lower()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "starts with"),
        ("https://example.org", "starts with"),
        (PREFIX + "!!!", "not base32"),
        (PREFIX, "checksum"),
        (Invite(ROOM, SECRET).to_uri()[:-3], "checksum"),
        (Invite(ROOM, SECRET).to_uri()[:-3] + "aaa", "checksum"),
        (encode([2, ROOM, SECRET, "", []]), "version"),
        (encode([1, ROOM, SECRET, ""]), "wrong shape"),
        (encode({"a": 1}), "cannot decode"),
        (encode([1, b"short", SECRET, "", []]), "32 bytes"),
        (encode([1, ROOM, SECRET, 5, []]), "wrong field types"),
        (encode([1, ROOM, SECRET, "bad\x1bname", []]), "printable"),
        (encode([1, ROOM, SECRET, "", ["no port"]]), "not a peer address"),
        (encode([1, ROOM, SECRET, "", ["host:99999"]]), "port out of range"),
        (encode([1, ROOM, SECRET, "", ["h:1"] * 9]), "at most 8"),
        (encode([1, ROOM, SECRET, "", "host:1"]), "wrong peer list"),
        (PREFIX + "a" * 5000, "too long"),
    ],
)
def test_bad_invites_give_one_line(text: str, message: str) -> None:
    with pytest.raises(InviteError, match=message) as caught:
        parse_invite(text)
    assert "\n" not in str(caught.value)


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_any_text_parses_or_raises_invite_error(text: str) -> None:
    try:
        invite = parse_invite(PREFIX + text)
    except InviteError:
        return
    assert parse_invite(invite.to_uri()) == invite


@settings(max_examples=200)
@given(st.data())
def test_any_change_to_a_valid_invite_is_caught(data: st.DataObject) -> None:
    uri = Invite(ROOM, SECRET, "room", ("192.0.2.1:9000",)).to_uri()
    at = data.draw(st.integers(len(PREFIX), len(uri) - 1))
    replacement = data.draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz234567"))
    changed = uri[:at] + replacement + uri[at + 1 :]
    if changed == uri:
        return
    with pytest.raises(InviteError):
        parse_invite(changed)
