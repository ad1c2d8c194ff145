"""Invite URIs: round trip, and a one-line InviteError for anything else."""

from __future__ import annotations

import base64
import os

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node._addresses import split_host_port
from node._invite import (
    PREFIX,
    Invite,
    InviteError,
    _checksum,
    check_address,
    check_room_name,
    parse_invite,
    reachability_problem,
)

ROOM, SECRET = os.urandom(32), os.urandom(32)


def test_round_trip() -> None:
    peers = ("192.0.2.7:4433", "[2001:db8::1]:80", "chat.example.org:443")
    invite = Invite(ROOM, SECRET, "weekend plans", peers)
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
        (encode([True, ROOM, SECRET, "", []]), "version True"),
        (encode([1.0, ROOM, SECRET, "", []]), "version 1.0"),
        (encode([1, ROOM, SECRET, ""]), "wrong shape"),
        (encode({"a": 1}), "cannot decode"),
        (encode([1, b"short", SECRET, "", []]), "32 bytes"),
        (encode([1, ROOM, SECRET, 5, []]), "wrong field types"),
        (encode([1, ROOM, SECRET, "bad\x1bname", []]), "printable"),
        (encode([1, ROOM, SECRET, "", ["no port"]]), "not a peer address"),
        (encode([1, ROOM, SECRET, "", ["host:99999"]]), "port out of range"),
        (encode([1, ROOM, SECRET, "", ["ws://127.0.0.1:17001/a:80"]]), "no scheme or path"),
        (encode([1, ROOM, SECRET, "", ["..:17001"]]), "not a peer address"),
        (encode([1, ROOM, SECRET, "", ["h:1"] * 9]), "at most 8"),
        (encode([1, ROOM, SECRET, "", "host:1"]), "wrong peer list"),
        (PREFIX + "a" * 5000, "too long"),
    ],
)
def test_bad_invites_give_one_line(text: str, message: str) -> None:
    with pytest.raises(InviteError, match=message) as caught:
        parse_invite(text)
    assert "\n" not in str(caught.value)


def test_whitespace_around_and_inside_is_ignored() -> None:
    """As a mail client or a terminal wraps a long line, or a paste picks up spaces."""
    invite = Invite(ROOM, SECRET, "room", ("192.0.2.1:9000",))
    uri = invite.to_uri()
    wrapped = "\n".join(uri[i : i + 30] for i in range(0, len(uri), 30))
    assert parse_invite(f"\n  {wrapped}\n") == invite
    assert parse_invite(f"\t{uri[:50]}\r\n {uri[50:]} \u00a0\n") == invite
    assert parse_invite(uri[:40] + " " + uri[40:]) == invite


@pytest.mark.parametrize(
    "address",
    [
        "192.0.2.1:1",
        "[::1]:65535",
        "[2001:db8::7]:80",
        "localhost:7340",
        "chat.example.org:443",
        "chat.example.org.:443",  # a fully qualified name, final dot and all
        "xn--bcher-kva.example:1",
        "a-b.c:1",
        f"{'a' * 63}.example:1",
        ".".join(["a" * 63] * 3 + ["b" * 61]) + ":1",  # 253 characters
    ],
)
def test_peer_addresses_accepted(address: str) -> None:
    assert check_address(address) == address
    assert parse_invite(Invite(ROOM, SECRET, "", (address,)).to_uri()).peers == (address,)


@pytest.mark.parametrize(
    ("address", "complaint"),
    [
        ("ws://127.0.0.1:17001/a:80", "no scheme or path"),  # its port was read from the path
        ("ws://127.0.0.1:17001/", "no scheme or path"),
        ("wss://chat.example.org:443", "no scheme or path"),
        ("127.0.0.1:17001/x", "no scheme or path"),
        ("..:17001", "host name"),  # crashed the node in getaddrinfo
        (f"{'a' * 64}.example:1", "host name"),
        (".".join(["a" * 63] * 3 + ["b" * 62]) + ":1", "host name"),  # 254 characters
        ("-a.example:1", "host name"),
        ("a-.example:1", "host name"),
        ("a..example:1", "host name"),
        ("a_b.example:1", "host name"),
        ("bücher.example:1", "host name"),
        ("999.999.999.999:1", "host name"),  # not an IP address, and not a name either
        (":1", "host name"),
        ("127.0.0.1:\u0661\u0667\u0660\u0660\u0661", "port must be a number"),  # Arabic-Indic
        ("127.0.0.1:\u00b2", "port must be a number"),  # superscript two
        ("127.0.0.1: 80", "port must be a number"),
        ("127.0.0.1:", "port must be a number"),
        ("127.0.0.1:0", "port out of range"),
        ("127.0.0.1:65536", "port out of range"),
        ("127.0.0.1", "host:port"),
        ("::1:80", "brackets"),
        ("[:::::::]:1", "IPv6"),
        ("[127.0.0.1]:1", "IPv6"),
        ("[fe80::1%eth0]:1", "IPv6"),
        ("[]:1", "no host"),
        ("[::1:1", "brackets"),
        ("a" * 301 + ":1", "too long"),
    ],
)
def test_bad_peer_addresses_are_refused(address: str, complaint: str) -> None:
    with pytest.raises(InviteError, match=complaint) as caught:
        check_address(address)
    assert "\n" not in str(caught.value)
    with pytest.raises(InviteError, match=complaint):
        parse_invite(encode([1, ROOM, SECRET, "", [address]]))


# Hosts near the edges: labels of 0-70 characters (some with hyphens at an end), IP
# literals with or without brackets, and odd text.
_HOSTISH = st.one_of(
    st.lists(st.text(alphabet="ab9Z-", max_size=70), min_size=1, max_size=5).map(".".join),
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
    st.text(alphabet="ab-.:[]019\u00b2\u0661/ _xZ%", max_size=80),
)


@settings(max_examples=500)
@given(_HOSTISH, st.integers(-1, 70000) | st.text(alphabet="0123456789\u00b2 ", max_size=6))
def test_an_accepted_address_can_be_looked_up(host: str, port: int | str) -> None:
    """Whatever check_address takes, getaddrinfo can be asked about: its host encodes as a
    DNS name (IDNA refuses empty labels and ones over 63 characters) and its port is one."""
    try:
        address = check_address(f"{host}:{port}")
    except InviteError:
        return
    name, number = split_host_port(address)
    assert 1 <= number <= 65535 and f"{number}" == str(port).lstrip("0")
    name.encode("idna")


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


# -- DHT contacts, room names, reachability ------------------------------------------------


def test_dht_contacts_round_trip_and_old_invites_stay_valid() -> None:
    invite = Invite(
        ROOM, SECRET, "room", ("192.0.2.1:9000",), ("192.0.2.1:9001", "[2001:db8::2]:7")
    )
    assert parse_invite(invite.to_uri()) == invite
    # Without contacts the invite is the old five-field form, byte for byte.
    old = encode([1, ROOM, SECRET, "room", ["192.0.2.1:9000"]])
    assert Invite(ROOM, SECRET, "room", ("192.0.2.1:9000",)).to_uri() == old
    assert parse_invite(old).dht == ()


@pytest.mark.parametrize(
    ("contacts", "message"),
    [
        ([], "wrong DHT contact list"),  # never written: not an invite of ours
        ([1], "wrong DHT contact list"),
        ("192.0.2.1:1", "wrong DHT contact list"),
        (["dht.example.org:4000"], "not a DHT contact"),  # IP literals only
        (["192.0.2.1:0"], "not a DHT contact"),
        (["192.0.2.1:1"] * 5, "at most 4 DHT contacts"),
    ],
)
def test_bad_dht_contacts_are_one_line_errors(contacts: object, message: str) -> None:
    with pytest.raises(InviteError, match=message) as caught:
        parse_invite(encode([1, ROOM, SECRET, "room", [], contacts]))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["", " ", "\t \u3000"])
def test_blank_room_names_are_refused(name: str) -> None:
    with pytest.raises(InviteError, match="not empty or blank"):
        check_room_name(name)
    assert check_room_name(" plans ") == " plans "


@pytest.mark.parametrize(
    ("listen", "advertise", "problem"),
    [
        ("0.0.0.0:4433", "203.0.113.5:4433", None),
        ("192.0.2.7:4433", None, None),
        (None, "relay.example.org:443", None),
        (None, None, "accepts no links"),
        ("127.0.0.1:0", None, "any free port"),
        ("127.0.0.1:4433", None, "loopback only"),
        ("[::1]:4433", None, "loopback only"),
        ("0.0.0.0:4433", None, "every interface"),
        ("0.0.0.0:4433", "127.0.0.1:4433", "loopback address"),
        ("0.0.0.0:4433", "localhost:4433", "loopback address"),
    ],
)
def test_reachability_problem(
    listen: str | None, advertise: str | None, problem: str | None
) -> None:
    said = reachability_problem(listen, advertise)
    if problem is None:
        assert said is None
    else:
        assert said is not None and problem in said and "\n" not in said
