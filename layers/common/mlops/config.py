"""Reading function settings from the environment.

The template sets every variable (Parameters -> Environment); the embedded local mode
sets the same ones. A missing or malformed variable fails the invocation at once with
its name, instead of surfacing later as a confusing AWS error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from mlops.errors import ConfigurationError

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def env_str(name: str, env: Mapping[str, str] | None = None, *, default: str | None = None) -> str:
    value = (os.environ if env is None else env).get(name, "").strip()
    if value:
        return value
    if default is not None:
        return default
    raise ConfigurationError(f"environment variable {name} is not set")


def env_int(
    name: str, env: Mapping[str, str] | None = None, *, default: int | None = None, minimum: int = 0
) -> int:
    raw = env_str(name, env, default=None if default is None else str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigurationError(f"{name}={value} must be at least {minimum}")
    return value


def env_float(
    name: str,
    env: Mapping[str, str] | None = None,
    *,
    default: float | None = None,
    minimum: float = 0.0,
    maximum: float | None = None,
) -> float:
    raw = env_str(name, env, default=None if default is None else str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise ConfigurationError(f"{name}={value} must be at least {minimum}{upper}")
    return value


def env_bool(
    name: str, env: Mapping[str, str] | None = None, *, default: bool | None = None
) -> bool:
    raw = env_str(name, env, default=None if default is None else str(default)).lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean (true/false)")


def env_json_object(
    name: str, env: Mapping[str, str] | None = None, *, default: str | None = None
) -> dict[str, Any]:
    raw = env_str(name, env, default=default)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value
