"""Helpers for the tests that start the local cloud process (``python -m localcloud.runtime.server``
under ``LocalCloudProcess``): each start is stopped again, also when it fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from localcloud.runtime.launcher import LaunchError, LocalCloudProcess
from localcloud.runtime.settings import Settings


@contextmanager
def started(settings: Settings) -> Iterator[LocalCloudProcess]:
    """A local cloud started with ``settings``, stopped when the block ends."""
    process = LocalCloudProcess(settings)
    try:
        process.start()
        yield process
    finally:
        process.stop()


def start_error(settings: Settings, **start: Any) -> str:
    """The LaunchError of a local cloud that must fail to start (``start``: arguments of
    ``LocalCloudProcess.start``); whatever it started is stopped."""
    process = LocalCloudProcess(settings)
    try:
        with pytest.raises(LaunchError) as raised:
            process.start(**start)
    finally:
        process.stop()
    return str(raised.value)
