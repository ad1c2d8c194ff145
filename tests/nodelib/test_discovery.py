"""Discovery through the DHT: members that share only a bootstrap node find each other."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import pytest
import trio

from dht import DHTNode
from node import Invite, parse_invite, room_dht_key

from ._helpers import open_node, same_room, wait_until


def through(boot: DHTNode, **extra: Any) -> dict[str, Any]:
    """Options for a node with a DHT that joins through `boot` and looks often."""
    host, port = boot.address[:2]
    return {"dht_port": 0, "bootstrap": [f"{host}:{port}"], "discovery_interval": 0.1, **extra}


async def test_members_find_each_other_through_the_dht(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with DHTNode("127.0.0.1", 0) as boot:
            options = through(boot, discovery_interval=0.2)
            async with (
                open_node(tmp_path / "a", **options) as a,
                open_node(tmp_path / "b", **options) as b,
            ):
                ra = await a.create_room("found")
                await ra.send("anyone there?")
                real = parse_invite(ra.invite())
                # No address at all: only the secret, from which the DHT key is derived.
                rb = await b.join(Invite(real.room, real.secret, real.name, ()))
                await rb.send("here!")
                await wait_until(lambda: len(ra.timeline()) == 2 and same_room(ra, rb))
                # Both may have dialed; both keep the same one link.
                await wait_until(
                    lambda: a.status().links == (b.peer_id,) and b.status().links == (a.peer_id,)
                )
                status = b.status()
                assert status.dht_contacts is not None and status.dht_contacts >= 1
                # B remembers where it found A, for invites and the next start.
                assert a.address in parse_invite(rb.invite()).peers


async def test_discovery_keeps_a_small_mesh_per_room(tmp_path: Path) -> None:
    """With a mesh of one, each member dials one other it found, not everyone: three
    members then hold at most three links between them, and still converge."""
    with trio.fail_after(20):
        async with DHTNode("127.0.0.1", 0) as boot:
            options = through(boot, mesh_size=1)
            async with (
                open_node(tmp_path / "a", **options) as a,
                open_node(tmp_path / "b", **options) as b,
                open_node(tmp_path / "c", **options) as c,
            ):
                ra = await a.create_room("small mesh")
                real = parse_invite(ra.invite())
                secret_only = Invite(real.room, real.secret, real.name, ())
                rb, rc = await b.join(secret_only), await c.join(secret_only)
                await ra.send("from a")
                await rb.send("from b")
                await rc.send("from c")
                await wait_until(
                    lambda: len(ra.timeline()) == 3 and same_room(ra, rb) and same_room(ra, rc)
                )
                for node in (a, b, c):
                    assert len(node._peering.dialed_in(real.room)) <= 1
                assert sum(len(n.status().links) for n in (a, b, c)) <= 2 * 3


async def test_bootstrap_names_are_looked_up_and_bad_ones_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(20):
        async with DHTNode("127.0.0.1", 0) as boot:
            port = boot.address[1]
            bootstrap = ["no-such-host.invalid:4000", f"localhost:{port}"]
            async with open_node(tmp_path / "a") as a:  # a room to open at the next start
                await a.create_room("kept")
            async with open_node(tmp_path / "a", dht_port=0, bootstrap=bootstrap) as a:
                await wait_until(lambda: (a.status().dht_contacts or 0) >= 1)
                assert [r.name for r in a.rooms()] == ["kept"]
                assert a.dht is not None and boot.node_id in {c.node_id for c in a.dht.contacts()}
    assert "no-such-host.invalid: cannot look it up" in caplog.text


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_advertised_host_name_is_looked_up_for_the_dht_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A names itself by host name (as behind dynamic DNS): its record carries the name's
    IP. B's name does not resolve: B goes unannounced, with a warning, yet still finds A."""
    caplog.set_level(logging.WARNING, logger="rumor")
    port = free_tcp_port()
    with trio.fail_after(20):
        async with DHTNode("127.0.0.1", 0) as boot:
            options = through(boot)
            async with (
                open_node(
                    tmp_path / "a",
                    listen=f"127.0.0.1:{port}",
                    advertise=f"localhost:{port}",
                    **options,
                ) as a,
                open_node(tmp_path / "b", advertise="no-such-host.invalid:4000", **options) as b,
            ):
                ra = await a.create_room("by name")
                real = parse_invite(ra.invite())
                assert real.peers == (f"localhost:{port}",)  # invites keep the name
                rb = await b.join(Invite(real.room, real.secret, real.name, ()))
                await ra.send("found by name?")
                await wait_until(lambda: same_room(ra, rb) and len(rb.timeline()) >= 1)
                assert b.status().links == (a.peer_id,)
                records = await b.dht.get_peers(room_dht_key(real.secret)) if b.dht else []
                assert [r.addresses for r in records] == [(("127.0.0.1", port),)]
    warnings = [r.message for r in caplog.records if "not announcing" in r.message]
    assert len(warnings) == 1 and "no-such-host.invalid" in warnings[0]
