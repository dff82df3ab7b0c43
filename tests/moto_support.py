"""moto's server for tests that talk to AWS over HTTP (the CLI, the console, a cleanup):
one context manager instead of a copy in each module."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's threaded server on a free loopback port of this process, its accounts reset
    (moto's backends are the process's: another test's resources would show); yields its
    URL and stops it on exit."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
        reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(reset, timeout=30):
            pass
        yield url
    finally:
        server.stop()
