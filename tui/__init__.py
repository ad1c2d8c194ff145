"""The Textual terminal UI, running the node as a trio guest on Textual's loop.

`run(data_dir)` opens the node in a data dir and chats in it; `RumorApp` is the app, built
on a `ChatClient` factory; `TrioGuest` is the one-thread bridge between asyncio and trio.
"""

from ._app import ClientFactory, RumorApp
from ._bridge import GuestClosed, TrioGuest
from ._run import local_client_factory, main, run, run_demo, run_remote

__all__ = [
    "ClientFactory",
    "GuestClosed",
    "RumorApp",
    "TrioGuest",
    "local_client_factory",
    "main",
    "run",
    "run_demo",
    "run_remote",
]
