"""Tests that need a part this machine may lack (the bubblewrap sandbox, AWS's training
toolkits, the notebook's packages, a python3.13 for ``sam build``) skip without it, saying
which, except under ``LOCALCLOUD_STRICT=1`` (set by ``.ci/run``, which installs every part):
there a missing part fails the test, so CI never passes by skipping what it should run."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest

STRICT_VARIABLE = "LOCALCLOUD_STRICT"


def strict() -> bool:
    return os.environ.get(STRICT_VARIABLE, "") not in ("", "0")


def missing_part(reason: str) -> NoReturn:
    """Skip (also at module level) because ``reason``; fail instead under LOCALCLOUD_STRICT."""
    if strict():
        pytest.fail(f"{reason} ({STRICT_VARIABLE}=1: this machine must have it)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def import_part(name: str) -> ModuleType:
    """``importlib.import_module(name)``, or ``missing_part`` when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing_part(f"{name} is not installed (make setup-dev): {exc}")
