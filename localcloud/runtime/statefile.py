"""The small file through which commands find a running local cloud."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = "localcloud.json"


def write_state(state_dir: Path, state: dict[str, Any]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=1, default=str))
    tmp.replace(state_dir / STATE_FILE)


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The state of the local cloud running for ``state_dir``, or None (also when stale)."""
    path = state_dir / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(state["pid"]), 0)
    except (ProcessLookupError, KeyError, ValueError):
        return None
    except PermissionError:
        pass
    return state
