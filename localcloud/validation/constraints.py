"""A request's members checked against its service model's constraints, as AWS's servers
check them before an operation runs, with the messages they write.

Checked, recursively through structures, lists and maps: required members ("Member must
not be null"), ``min``/``max`` (string length in UTF-16 units as Java counts it, list and
map sizes: "Member must have length ..."; number ranges: "Member must have value ..."),
``enum`` and ``pattern`` (whole-value match: ``java_patterns``). Blobs and timestamps are
not checked. Each failure is one error in AWS's (Coral's) form::

    Value 'a;b' at 'modelPackageGroupName' failed to satisfy constraint: Member must satisfy
    regular expression pattern: ...

and the message of a request is ``"N validation error(s) detected: "`` followed by the
errors joined with ``"; "``. Member paths are the model's member names with the first
letter in lower case (``kMSKeyArn``), dotted; a list element is ``.N.member`` (1-based);
a map's keys and values are checked together and reported at the map
(``Map keys must satisfy constraint: [...]``, ``Map value must satisfy constraint: [...]``),
and so are a list's scalar members (``Member must satisfy constraint: [...]``). Values are
printed as Java prints them (``[a, b]``, ``{k=v}``, ``null``); a sensitive member's value
is not printed ("Value at 'x' ...").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape

from localcloud.validation import java_patterns

_NUMBERS = ("integer", "long", "float", "double", "bigdecimal", "biginteger")


def message(errors: list[str]) -> str:
    count = len(errors)
    noun = "error" if count == 1 else "errors"
    return f"{count} validation {noun} detected: " + "; ".join(errors)


def check(shape: StructureShape | None, params: Mapping[str, Any]) -> list[str]:
    """The validation errors of an operation's input (an empty list: it is valid)."""
    if shape is None:
        return []
    errors: list[str] = []
    _structure(shape, params, "", errors)
    return errors


def _member_path(parent: str, name: str) -> str:
    member = name[:1].lower() + name[1:]
    return f"{parent}.{member}" if parent else member


def _structure(
    shape: StructureShape, value: Mapping[str, Any], path: str, errors: list[str]
) -> None:
    required = set(shape.required_members)
    for name, member in shape.members.items():
        where = _member_path(path, name)
        item = value.get(name)
        if item is None:
            if name in required:
                errors.append(
                    f"Value null at '{where}' failed to satisfy constraint: Member must not be null"
                )
            continue
        _value(member, item, where, errors)


def _value(shape: Shape, value: Any, path: str, errors: list[str]) -> None:
    for failure in scalar_failures(shape, value):
        errors.append(f"{_shown(shape, value)} at '{path}' failed to satisfy constraint: {failure}")
    if isinstance(shape, StructureShape) and isinstance(value, Mapping):
        _structure(shape, value, path, errors)
    elif isinstance(shape, ListShape) and isinstance(value, list):
        _list(shape, value, path, errors)
    elif isinstance(shape, MapShape) and isinstance(value, Mapping):
        _map(shape, value, path, errors)


def _list(shape: ListShape, value: list[Any], path: str, errors: list[str]) -> None:
    member = shape.member
    if isinstance(member, (StructureShape, ListShape, MapShape)):
        for index, item in enumerate(value, 1):
            if item is not None:
                _value(member, item, f"{path}.{index}.member", errors)
        return
    failures = _unique(f for item in value for f in scalar_failures(member, item))
    if failures:
        errors.append(
            f"{_shown(shape, value)} at '{path}' failed to satisfy constraint: "
            f"Member must satisfy constraint: [{', '.join(failures)}]"
        )


def _map(shape: MapShape, value: Mapping[Any, Any], path: str, errors: list[str]) -> None:
    key_failures = _unique(f for key in value for f in scalar_failures(shape.key, key))
    if key_failures:
        errors.append(
            f"{_shown(shape, value)} at '{path}' failed to satisfy constraint: "
            f"Map keys must satisfy constraint: [{', '.join(key_failures)}]"
        )
    if isinstance(shape.value, (StructureShape, ListShape, MapShape)):
        for key, item in value.items():
            if item is not None:
                _value(shape.value, item, f"{path}.{key}", errors)
        return
    value_failures = _unique(
        f for item in value.values() if item is not None for f in scalar_failures(shape.value, item)
    )
    if value_failures:
        errors.append(
            f"{_shown(shape, value)} at '{path}' failed to satisfy constraint: "
            f"Map value must satisfy constraint: [{', '.join(value_failures)}]"
        )


def scalar_failures(shape: Shape, value: Any) -> list[str]:
    """The constraints of the shape itself (not its members') that the value breaks."""
    meta = shape.metadata
    failures: list[str] = []
    kind = shape.type_name
    if kind == "string" and isinstance(value, str):
        size = _java_length(value)
    elif kind in ("list", "map") and isinstance(value, (list, Mapping)):
        size = len(value)
    elif kind in _NUMBERS and isinstance(value, (int, float)) and not isinstance(value, bool):
        if "max" in meta and value > meta["max"]:
            failures.append(f"Member must have value less than or equal to {_number(meta['max'])}")
        if "min" in meta and value < meta["min"]:
            failures.append(
                f"Member must have value greater than or equal to {_number(meta['min'])}"
            )
        return failures
    else:
        return failures
    if "max" in meta and size > meta["max"]:
        failures.append(f"Member must have length less than or equal to {meta['max']}")
    if "min" in meta and size < meta["min"]:
        failures.append(f"Member must have length greater than or equal to {meta['min']}")
    if kind != "string":
        return failures
    if "enum" in meta and value not in meta["enum"]:
        failures.append(f"Member must satisfy enum value set: [{', '.join(meta['enum'])}]")
    pattern = meta.get("pattern")
    if pattern and java_patterns.matches(pattern, value) is False:
        failures.append(f"Member must satisfy regular expression pattern: {pattern}")
    return failures


def _java_length(text: str) -> int:
    """String.length(): UTF-16 code units (a character beyond U+FFFF counts twice)."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _unique(failures: Any) -> list[str]:
    return list(dict.fromkeys(failures))


def _shown(shape: Shape, value: Any) -> str:
    if shape.metadata.get("sensitive"):
        return "Value"
    return f"Value '{java_string(value)}'"


def java_string(value: Any) -> str:
    """The value as Java's toString writes it (lists ``[a, b]``, maps ``{k=v}``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(java_string(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={java_string(v)}" for k, v in value.items()) + "}"
    return str(value)
