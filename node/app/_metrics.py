"""Prometheus metrics of a running node, served over HTTP on trio.

`NodeCollector` reads `Node.status()` at scrape time, so the metrics are never stale and
the node keeps no second set of counters. `serve_metrics` is a minimal HTTP/1.0 server on
trio (not prometheus-client's threaded one): a scrape runs in the node's own thread, where
reading the node's state is safe. It must never change the node.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .._status import NodeStatus

__all__ = ["NodeCollector", "serve_metrics"]

log = logging.getLogger("rumor")

MAX_REQUEST = 8192  # bytes of request head we read before answering anyway
REQUEST_TIMEOUT = 5.0


class NodeCollector(Collector):
    """The node's links, DHT contacts and each room's sync state, from `Node.status()`."""

    def __init__(self, status: Callable[[], NodeStatus]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        yield GaugeMetricFamily("rumor_links", "Open links to peers.", value=len(status.links))
        yield GaugeMetricFamily(
            "rumor_dht_contacts",
            "Contacts in the DHT routing table.",
            value=status.dht_contacts or 0,
        )
        yield GaugeMetricFamily(
            "rumor_dht_bootstrap_failed",
            "1 while bootstrap addresses were given but none answered in time.",
            value=int(status.dht_bootstrap_failed),
        )
        dht = CounterMetricFamily(
            "rumor_dht_events",
            "DHT node events: RPCs sent and served, retries, timeouts, drops by kind.",
            labels=["event"],
        )
        for event, count in status.dht_counters:
            dht.add_metric([event], count)
        yield dht
        yield GaugeMetricFamily("rumor_rooms", "Rooms this node holds.", value=len(status.rooms))
        yield GaugeMetricFamily(
            "rumor_rooms_failed",
            "Rooms stopped because their file could not be opened or written.",
            value=len(status.failed_rooms),
        )
        yield CounterMetricFamily(
            "rumor_room_refusals",
            "Room proofs peers got wrong (a wrong secret).",
            value=status.refusals,
        )
        labels = ["room"]
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "peers": GaugeMetricFamily(
                "rumor_room_peers", "Peers linked and authorised for the room.", labels=labels
            ),
            "ops": GaugeMetricFamily("rumor_room_ops", "Ops stored for the room.", labels=labels),
            "authors": GaugeMetricFamily(
                "rumor_room_authors", "Authors seen in the room.", labels=labels
            ),
            "behind": GaugeMetricFamily(
                "rumor_room_sync_lag_ops",
                "Ops that linked peers' version vectors show this node lacks (sync lag).",
                labels=labels,
            ),
            "held": GaugeMetricFamily(
                "rumor_room_held_ops",
                "Ops stored but waiting for an op not yet received.",
                labels=labels,
            ),
            "ingesting": GaugeMetricFamily(
                "rumor_room_ingesting_batches",
                "Batches from peers being verified and stored.",
                labels=labels,
            ),
            "received": CounterMetricFamily(
                "rumor_room_ops_received", "Op wire forms received from peers.", labels=labels
            ),
            "penalties": CounterMetricFamily(
                "rumor_room_penalties",
                "Peers cut off for misbehaving in the room.",
                labels=labels,
            ),
            "sent": CounterMetricFamily(
                "rumor_room_ops_sent", "Op wire forms sent to peers.", labels=labels
            ),
            "duplicates": CounterMetricFamily(
                "rumor_room_ops_duplicate", "Received ops already held.", labels=labels
            ),
        }
        rejected = CounterMetricFamily(
            "rumor_room_ops_rejected",
            "Received ops refused by verification, by reason.",
            labels=["room", "reason"],
        )
        for room in status.rooms:
            label = [room.room_id.hex()[:16]]
            for field, family in families.items():
                value = getattr(room, field)
                family.add_metric(label, len(value) if isinstance(value, tuple) else value)
            for reason, count in room.rejected:
                rejected.add_metric([*label, reason], count)
        yield from families.values()
        yield rejected


async def serve_metrics(registry: CollectorRegistry, listeners: list[trio.SocketListener]) -> None:
    """Answer `GET /metrics` (and `/`) on `listeners` until cancelled. The caller opens
    them (`trio.open_tcp_listeners`), so a port in use is an error before the node starts."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            with trio.move_on_after(REQUEST_TIMEOUT):
                head = b""
                while b"\r\n\r\n" not in head and len(head) < MAX_REQUEST:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    head += chunk
                parts = head.split(b"\r\n", 1)[0].split()
                path = parts[1].split(b"?")[0] if len(parts) >= 2 else b""
                if parts[:1] == [b"GET"] and path in (b"/metrics", b"/"):
                    try:
                        body = generate_latest(registry)
                        status, kind = "200 OK", CONTENT_TYPE_LATEST
                    except Exception as exc:  # a scrape must never take the node down
                        log.error("metrics: %r", exc)
                        status, kind, body = "500 Internal Server Error", "text/plain", b""
                else:
                    status, kind, body = "404 Not Found", "text/plain", b"try /metrics\n"
                response = (
                    f"HTTP/1.0 {status}\r\nContent-Type: {kind}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                ).encode() + body
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(response)

    await trio.serve_listeners(handle, listeners)
