"""training/demo.py end to end (one short epoch): it classifies over HTTP and cleans up."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest

from tests.training.serving_helpers import REPO


@pytest.mark.e2e  # a real epoch on 1,257 digits: about 30 s on two idle cores
def test_demo_trains_serves_classifies_and_stops_the_server(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "training.demo", "--work-dir", str(tmp_path), "--epochs", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(re.findall(r"label (\d)  predicted (\d)", result.stdout)) == 10  # one per digit
    assert re.search(r"served: \d+/10 correct; test accuracy .*: 0\.\d{3}", result.stdout)
    port = int(re.search(r"http://127\.0\.0\.1:(\d+)/invocations", result.stdout).group(1))
    with socket.socket() as sock:  # the server is gone: nothing listens on its port
        assert sock.connect_ex(("127.0.0.1", port)) != 0
