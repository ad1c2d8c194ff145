"""Benchmark: a big room on disk, opened by a node (issue 14, part 2).

Builds a room of N signed message ops from A authors (real Ed25519 signatures, written
straight into the schema's tables, cached in the temp dir by parameters), then measures
in a fresh child process, as a node would do it:
  - `History.open` + the newest page (100 messages): target <= 1.0 s;
  - resident memory with the room open: target <= 300 MiB;
  - reading older pages (100 messages before a random message, and before a random
    time), the slowest of 200: target <= 50 ms;
  - ingest of new ops from peers into the big room against the all-cores raw verify
    rate: target >= 0.75 (the ratio of tests/bench/ingest.py, measured as it does: 50,000
    ops in batches of 1,000, two in flight, so that the WAL's checkpoints are counted; one
    batch at a time is printed too, for information);
  - sync catch-up (`missing_for` in batches, as sync asks) for a peer missing M ops
    beyond its vector, at two sizes of M: the time per missing op stays flat (the
    larger catch-up costs <= 2x per op what the smaller does), i.e. it is proportional
    to what is missing, not to the room's size.
Each target prints one line ending in MET or NOT MET with the ratio to the target.

    python tests/bench/bigroom.py            # 1,000,000 ops from 200 authors
    python tests/bench/bigroom.py --quick    # 50,000 ops from 200 authors, for CI
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import msgpack

from crdt import SCHEMA_VERSION, Identity, Store, make_hlc
from crdt._applier import SHIFT
from crdt._op import SIGNING_CONTEXT

T0 = 1_700_000_000_000
PAGE = 100
NEW_OPS = 50_000  # new ops ingested, as many as tests/bench/ingest.py measures
QUICK_NEW_OPS = 5_000
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "rumor",
    "chat",
    "peer",
    "node",
    "room",
    "sync",
]


def _seed(author: int) -> bytes:
    return hashlib.blake2b(b"bigroom author %d" % author, digest_size=32).digest()


def _room(count: int, authors: int) -> bytes:
    return hashlib.blake2b(b"bigroom %d %d" % (count, authors), digest_size=32).digest()


def _sign_chain(job: tuple[int, int, int, bytes]) -> list[tuple[int, int, int, bytes, bytes]]:
    """One author's chain: op i of the room (i % authors == author) at seq i // authors + 1,
    hlc from i, so the room's effect order is i. Returns (i, seq, hlc, id, data)."""
    author, authors, count, room = job
    me = Identity.from_seed(_seed(author))
    rng = random.Random(author)
    prev: bytes | None = None
    rows = []
    for i in range(author, count, authors):
        seq = i // authors + 1
        hlc = make_hlc(T0 + i)
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40)))
        payload = msgpack.packb([1, room, me.peer_id, seq, prev, hlc, 1, [text, None]])
        op_id = hashlib.blake2b(payload, digest_size=32).digest()
        rows.append((i, seq, hlc, op_id, payload + me.sign(SIGNING_CONTEXT + payload)))
        prev = op_id
    return rows


def build(path: Path, count: int, authors: int) -> None:
    """Write the room file: every op in the ops table and its row in the views."""
    import trio

    tmp = path.with_suffix(".building")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    room = _room(count, authors)
    started = time.perf_counter()
    with multiprocessing.Pool(os.cpu_count() or 1) as pool:
        chains = pool.map(_sign_chain, [(a, authors, count, room) for a in range(authors)])
    print(f"  signed {count:,} ops in {time.perf_counter() - started:.0f} s", flush=True)

    async def schema() -> None:
        async with Store.open(tmp) as store:
            await store.set_meta({"room": room})

    trio.run(schema)
    db = sqlite3.connect(tmp, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    db.execute("DROP TABLE IF EXISTS ops_v1")
    keys = [Identity.from_seed(_seed(a)).peer_id for a in range(authors)]
    db.executemany(
        "INSERT INTO authors (a, key) VALUES (?, ?)", [(a + 1, k) for a, k in enumerate(keys)]
    )
    rows = sorted(row for chain in chains for row in chain)
    db.executemany(
        "INSERT INTO ops (n, id, a, seq, data) VALUES (?, ?, ?, ?, ?)",
        ((i, op_id, i % authors + 1, seq, data) for i, seq, _, op_id, data in rows),
    )
    db.executemany(
        "INSERT INTO messages (hlc, author, seq, id, n) VALUES (?, ?, ?, ?, ?)",
        ((hlc - SHIFT, keys[i % authors], seq, op_id, i) for i, seq, hlc, op_id, _ in rows),
    )
    db.execute("INSERT INTO op_ids (id, n) SELECT id, n FROM ops ORDER BY id")
    db.execute("INSERT INTO chain (a, seq, n) SELECT a, seq, n FROM ops ORDER BY a, seq, n")
    db.execute("UPDATE op_ids_through SET n = ?", (len(rows) - 1,))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    tmp.rename(path)
    print(
        f"  built {path} ({path.stat().st_size / 2**20:,.0f} MiB) in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )


def new_ops(path: str, count: int, authors: int, extra: int) -> list[bytes]:
    """`extra` more ops continuing the room's chains from their heads in the file (as
    peers would send them)."""
    room = _room(count, authors)
    with sqlite3.connect(path) as db:
        last = {
            a - 1: bytes(op_id)
            for a, op_id in db.execute(
                "SELECT a, id FROM ops WHERE n >= ?", (count - authors,)
            ).fetchall()
        }
    ops = []
    for i in range(count, count + extra):
        a = i % authors
        me = Identity.from_seed(_seed(a))
        payload = msgpack.packb(
            [
                1,
                room,
                me.peer_id,
                i // authors + 1,
                last[a],
                make_hlc(T0 + i),
                1,
                [f"new {i}", None],
            ]
        )
        ops.append(payload + me.sign(SIGNING_CONTEXT + payload))
        last[a] = hashlib.blake2b(payload, digest_size=32).digest()
    return ops


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(path: str, count: int, authors: int, new: int) -> None:
    """In a fresh process: open the room as a node does and measure. Prints a msgpack map."""
    import trio

    from crdt import History, Verifier
    from tests.bench.ingest import BATCH, IN_FLIGHT, raw_verify_rate

    results: dict[str, float] = {}

    async def run() -> None:
        async with Verifier.open() as verifier:
            base = _rss_mib()
            started = time.perf_counter()
            async with History.open(path, verifier=verifier, scrub=False) as history:
                newest = history.replica.page(limit=PAGE)
                results["open_s"] = time.perf_counter() - started
                assert len(newest) == PAGE
                results["rss_mib"] = _rss_mib()
                results["base_mib"] = base
                replica = history.replica
                rng = random.Random(3)
                worst = 0.0
                for k in range(200):
                    if k % 2:
                        n = rng.randrange(count)
                        row = replica._rows("SELECT id FROM ops WHERE n = ?", (n,))
                        t = time.perf_counter()
                        page = replica.page(before=bytes(row[0][0]), limit=PAGE)
                    else:
                        t = time.perf_counter()
                        page = replica.page(before_ms=T0 + rng.randrange(count), limit=PAGE)
                    worst = max(worst, time.perf_counter() - t)
                    assert page
                results["page_worst_s"] = worst
                # Catch-up: a peer missing the last m ops of every author, in sync batches.
                heads = replica.version_vector()
                for missing in (2_000, 20_000):
                    behind = max(1, missing // len(heads))
                    vector = {a: h - behind for a, h in heads.items()}
                    t = time.perf_counter()
                    sent = 0
                    while True:
                        batch = replica.missing_for(vector, limit=500)
                        if not batch:
                            break
                        for op in batch:
                            vector[op.author] = max(vector[op.author], op.seq)
                        sent += len(batch)
                    results[f"catchup_{missing}_s"] = time.perf_counter() - t
                    results[f"catchup_{missing}_ops"] = sent
                # New ops from peers, as sync delivers them and as tests/bench/ingest.py
                # measures: batches of 1,000, the next taken in while one is applied (a
                # node runs each batch of a peer's window as its own ingest task).
                extra = new_ops(path, count, authors, 2 * new)
                in_flight = trio.Semaphore(IN_FLIGHT)

                async def one(batch: list[bytes]) -> None:
                    report = await history.ingest(batch)
                    assert len(report.added) == len(batch), report.rejected
                    in_flight.release()

                t = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for at in range(0, new, BATCH):
                        await in_flight.acquire()
                        nursery.start_soon(one, extra[at : at + BATCH])
                results["ingest_rate"] = new / (time.perf_counter() - t)
                # For information: one batch at a time, each committed before the next.
                t = time.perf_counter()
                for at in range(new, 2 * new, BATCH):
                    await in_flight.acquire()
                    await one(extra[at : at + BATCH])
                results["ingest_serial_rate"] = new / (time.perf_counter() - t)
                results["rss_after_mib"] = _rss_mib()
        results["verify_rate"] = max(raw_verify_rate(extra, os.cpu_count() or 1) for _ in range(3))

    trio.run(run)
    print(msgpack.packb(results).hex())


def line(name: str, value: str, ratio: float, met: bool) -> None:
    print(f"{name:<44} {value:>22}  ({ratio:.2f}x the target) {'MET' if met else 'NOT MET'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 ops instead of 1,000,000")
    parser.add_argument("--ops", type=int, default=None)
    parser.add_argument("--authors", type=int, default=200)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]), int(args.child[3]))
        return
    count = args.ops or (50_000 if args.quick else 1_000_000)
    new = QUICK_NEW_OPS if args.quick else NEW_OPS
    path = Path(tempfile.gettempdir()) / (
        f"rumor-bigroom-{count}-{args.authors}-schema{SCHEMA_VERSION}.sqlite3"
    )
    print(f"room of {count:,} ops from {args.authors} authors: {path}", flush=True)
    if not path.exists():
        build(path, count, args.authors)
    # Measure on a copy: ingest adds ops, and the cached file must stay as built.
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "room.sqlite3"
        subprocess.run(["cp", str(path), str(copy)], check=True)
        load = os.getloadavg()[0]
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(copy), *map(str, (count, args.authors, new))],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    r = msgpack.unpackb(bytes.fromhex(out.strip().splitlines()[-1]))
    print(f"load average before the run: {load:.2f} on {os.cpu_count()} cores")
    line(
        "open + newest page", f"{r['open_s'] * 1000:,.0f} ms", r["open_s"] / 1.0, r["open_s"] <= 1.0
    )
    line(
        "resident memory with the room open",
        f"{r['rss_mib']:,.0f} MiB",
        r["rss_mib"] / 300,
        r["rss_mib"] <= 300,
    )
    print(f"  (before open {r['base_mib']:.0f} MiB; after ingest {r['rss_after_mib']:.0f} MiB)")
    line(
        "slowest older page of 200",
        f"{r['page_worst_s'] * 1000:,.1f} ms",
        r["page_worst_s"] / 0.05,
        r["page_worst_s"] <= 0.05,
    )
    ratio = r["ingest_rate"] / r["verify_rate"]
    line(
        f"ingest of {new:,} new ops / all-cores verify",
        f"{r['ingest_rate']:,.0f} / {r['verify_rate']:,.0f} /s",
        ratio / 0.75,
        ratio >= 0.75,
    )
    serial = r["ingest_serial_rate"]
    share = serial / r["verify_rate"]
    print(f"  (one batch at a time: {serial:,.0f} /s, {share:.2f}x the verify rate)")
    small = r["catchup_2000_s"] / r["catchup_2000_ops"]
    large = r["catchup_20000_s"] / r["catchup_20000_ops"]
    print(
        f"  catch-up: {r['catchup_2000_ops']:,} ops in {r['catchup_2000_s'] * 1000:,.0f} ms, "
        f"{r['catchup_20000_ops']:,} ops in {r['catchup_20000_s'] * 1000:,.0f} ms"
    )
    line(
        "catch-up cost per missing op, 20k vs 2k",
        f"{large * 1e6:.1f} vs {small * 1e6:.1f} us",
        (large / small) / 2,
        large <= 2 * small,
    )


if __name__ == "__main__":
    main()
