"""`run`: open the node stored in a data dir and chat in it; `main`: ``python -m tui``.

The node is opened inside the app's trio guest (`Node.open` creates the identity on a
first run), wrapped in `LocalClient`; a `client_factory` replaces it (the remote client
for a daemon, or a test's). Errors come out as one line and an exit status, never a
traceback; Textual restores the terminal however the app ends.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import platformdirs

from node import Node
from node.client import ChatClient, LocalClient

from ._app import ClientFactory, RumorApp

__all__ = ["DATA_DIR_ENV", "local_client_factory", "main", "run", "run_demo", "run_remote"]

DATA_DIR_ENV: Final = "RUMOR_DATA_DIR"


def local_client_factory(data_dir: Path, **node_options: Any) -> ClientFactory:
    """A factory opening the node in `data_dir` in-process (`Node.open` options pass on)."""

    @asynccontextmanager
    async def open_client() -> AsyncIterator[ChatClient]:
        async with Node.open(data_dir, **node_options) as node:
            yield LocalClient(node)

    return open_client


def node_options_from_config(data_dir: Path) -> dict[str, Any]:
    """`Node.open` options from the data dir's config.toml (as `rumor run` reads it), or
    none when the file is absent (a first run: loopback links, a DHT on any port)."""
    from node._datadir import CONFIG_FILE
    from node.app._config import load_config  # the one reader of that file

    path = data_dir / CONFIG_FILE
    if not path.exists():
        return {}
    config = load_config(path)
    return {
        "listen": config.listen,
        "advertise": config.advertise or None,
        "dht_port": config.dht_port,
        "dht_host": config.dht_host,
        "bootstrap": list(config.bootstrap),
        "verify_workers": config.verify_workers,
    }


def run(data_dir: Path, *, client_factory: ClientFactory | None = None, **node_options: Any) -> int:
    """Run the chat UI on the node in `data_dir` until the user quits; the exit status."""
    data_dir = Path(data_dir)
    try:
        if client_factory is None:
            data_dir.mkdir(parents=True, exist_ok=True)
            options = node_options or node_options_from_config(data_dir)
            client_factory = local_client_factory(data_dir, **options)
        app = RumorApp(client_factory, state_dir=data_dir)
        app.run()
    except (OSError, ValueError) as exc:
        print(f"rumor: {exc}", file=sys.stderr)
        return 1
    return app.return_code if app.return_code is not None else 1


def run_remote(client_factory: ClientFactory, *, state_dir: Path | None = None) -> int:
    """Run the chat UI against a node elsewhere (`rumor attach`): `client_factory` opens
    the remote client. The UI's own state (read markers) lives in `state_dir`, by default
    the platform's state dir for rumor."""
    if state_dir is None:
        state_dir = Path(platformdirs.user_state_dir("rumor")) / "attach"
    state_dir.mkdir(parents=True, exist_ok=True)
    return run(state_dir, client_factory=client_factory)


def run_demo(client_factory: ClientFactory) -> int:
    """Run the chat UI on `rumor demo`'s own node while its bots chat (`client_factory`
    yields a client over that node); read markers are not kept."""
    app = RumorApp(client_factory, state_dir=None)
    app.run()
    return app.return_code if app.return_code is not None else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tui", description="rumor's chat UI")
    parser.add_argument("--data-dir", type=Path, metavar="DIR", help="the node's data dir")
    args = parser.parse_args(argv)
    data_dir = args.data_dir
    if data_dir is None:
        env = os.environ.get(DATA_DIR_ENV)
        if env:
            data_dir = Path(env)
        else:
            from node._datadir import default_data_dir  # reused, not redefined

            data_dir = default_data_dir()
    return run(data_dir)
