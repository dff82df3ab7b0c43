"""Starting the console next to a running local cloud (``up`` and ``run`` use this)."""

from __future__ import annotations

import argparse

from localcloud.console.page_server import Console
from localcloud.runtime.connection import Connection
from localcloud.runtime.launcher import LaunchError
from localcloud.runtime.settings import Settings


def add_console_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--console-port",
        type=int,
        default=0,
        metavar="PORT",
        help="port of the console page on 127.0.0.1 (default: a free port)",
    )


def start_console(conn: Connection, settings: Settings, port: int = 0) -> Console:
    """The console page for ``conn``, serving; training curves go to ``<state dir>/plots``."""
    title = f"{settings.stack_name or 'local cloud'} ({conn.region}, local)"
    console = Console(
        conn.endpoint_url, conn.region, state_dir=settings.state_dir, port=port, title=title
    )
    try:
        console.start()
    except OSError as exc:
        where = f"127.0.0.1:{port}"
        raise LaunchError(f"the console cannot listen on {where}: {exc.strerror}") from None
    return console
