"""The `rumor` command line.

Until the peer network lands, `rumor demo` shows the replicated history at work: two
people write in the same room while apart, then their nodes sync, and both end up showing
the same room. Bad arguments give one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import trio

from crdt import History, Identity, Kind, Message, StoreError, Verifier

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rumor", description="A self-hosted peer-to-peer chat node.")
    parser.add_argument("--version", action="version", version="rumor 0.1.0")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    demo = commands.add_parser(
        "demo", help="two replicas of one room write apart, sync, and converge"
    )
    demo.add_argument(
        "--data-dir", type=Path, help="keep the two histories here (default: a temp dir)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 0
    try:
        if args.data_dir is not None:
            return trio.run(_demo, args.data_dir)
        with tempfile.TemporaryDirectory(prefix="rumor-demo-") as tmp:
            return trio.run(_demo, Path(tmp))
    except (StoreError, OSError) as exc:
        print(f"rumor: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _demo(data_dir: Path) -> int:
    room = hashlib.blake2b(b"rumor demo room", digest_size=32).digest()
    alice, bob = Identity.generate(), Identity.generate()
    names = {alice.peer_id: "alice", bob.peer_id: "bob"}
    async with (
        Verifier.open() as verifier,
        History.open(
            data_dir / "alice" / "room.sqlite3", room=room, identity=alice, verifier=verifier
        ) as a,
        History.open(
            data_dir / "bob" / "room.sqlite3", room=room, identity=bob, verifier=verifier
        ) as b,
    ):
        # Apart: each writes without seeing the other.
        await a.author(Kind.JOIN, ())
        await a.author(Kind.NICK, ("alice",))
        await a.author(Kind.TOPIC, ("weekend plans",))
        hike, _ = await a.author(Kind.MESSAGE, ("hike on saturday?", None))
        await b.author(Kind.JOIN, ())
        await b.author(Kind.NICK, ("bob",))
        await b.author(Kind.TOPIC, ("saturday: hike",))
        await b.author(Kind.MESSAGE, ("anyone up for a hike?", None))
        print("before sync:")
        _show("alice", a, names)
        _show("bob", b, names)

        # Together: each sends what the other's version vector lacks.
        to_bob = [op.data for op in a.replica.missing_for(b.replica.version_vector())]
        to_alice = [op.data for op in b.replica.missing_for(a.replica.version_vector())]
        await b.ingest(to_bob)
        await a.ingest(to_alice)
        await b.author(Kind.REACT, (hike.id, "👍"))
        await a.author(Kind.EDIT, (hike.id, "hike on saturday? 9am at the station"))
        await a.ingest([op.data for op in b.replica.missing_for(a.replica.version_vector())])
        await b.ingest([op.data for op in a.replica.missing_for(b.replica.version_vector())])
        print("after sync:")
        _show("alice", a, names)
        _show("bob", b, names)
        same = a.replica.render() == b.replica.render()
        print(
            f"converged: {'yes' if same else 'NO'} ({len(a.replica)} ops each, "
            f"stored in {data_dir})"
        )
        return 0 if same else 1


def _show(who: str, history: History, names: dict[bytes, str]) -> None:
    replica = history.replica
    print(f"  {who}'s view  topic: {replica.topic!r}")
    for message in replica.timeline():
        print(f"    {_line(message, names)}")


def _line(message: Message, names: dict[bytes, str]) -> str:
    author = names.get(message.author, message.author.hex()[:8])
    flags = " (edited)" if message.edited else ""
    reactions = "".join(f"  {emoji}{len(who)}" for emoji, who in message.reactions)
    return f"<{author}> {message.text}{flags}{reactions}"


if __name__ == "__main__":
    raise SystemExit(main())
