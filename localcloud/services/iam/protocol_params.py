"""A request's parameters as the service model's values, decoded from what botocore's
serializers put on the wire: nested query-protocol members (``Tags.member.1.Key``,
``Attributes.entry.1.key``, flattened lists ``Foo.1``), Smithy RPC v2 CBOR bodies (with
botocore's own CBOR decoder), and REST labels, query strings and headers typed by their
shapes (numbers, booleans, lists). ``protocol.py`` names the operation; this fills its input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape
from botocore.parsers import ResponseParserError, RpcV2CBORParser

_INTEGERS = ("integer", "long", "biginteger")
_FLOATS = ("float", "double", "bigdecimal")


def query_params(shape: StructureShape | None, form: Mapping[str, str]) -> dict[str, Any]:
    """The input of a query-protocol request from its flat form fields."""
    if shape is None:
        return {}
    prefixes = set()
    for key in form:
        parts = key.split(".")
        prefixes.update(".".join(parts[:n]) for n in range(1, len(parts) + 1))
    decoded = _query_structure(shape, "", form, prefixes)
    return decoded if isinstance(decoded, dict) else {}


def _query_value(shape: Shape, name: str, form: Mapping[str, str], prefixes: set[str]) -> Any:
    if name not in prefixes:
        return None
    if isinstance(shape, StructureShape):
        return _query_structure(shape, name, form, prefixes)
    if isinstance(shape, ListShape):
        if form.get(name) == "":  # an empty list is sent as ``Name=``
            return []
        flat = shape.serialization.get("flattened")
        element = name if flat else f"{name}.{shape.member.serialization.get('name', 'member')}"
        items = []
        while f"{element}.{len(items) + 1}" in prefixes:
            items.append(_query_value(shape.member, f"{element}.{len(items) + 1}", form, prefixes))
        return items
    if isinstance(shape, MapShape):
        entry = name if shape.serialization.get("flattened") else f"{name}.entry"
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        result: dict[str, Any] = {}
        index = 1
        while f"{entry}.{index}" in prefixes:
            key = form.get(f"{entry}.{index}.{key_name}")
            if key is not None:
                prefix = f"{entry}.{index}.{value_name}"
                result[key] = _query_value(shape.value, prefix, form, prefixes)
            index += 1
        return result
    return typed(shape, form[name]) if name in form else None


def _query_structure(
    shape: StructureShape, name: str, form: Mapping[str, str], prefixes: set[str]
) -> dict[str, Any]:
    result = {}
    for member_name, member in shape.members.items():
        wire = member.serialization.get("name", member_name)
        value = _query_value(member, f"{name}.{wire}" if name else wire, form, prefixes)
        if value is not None:
            result[member_name] = value
    return result


def typed(shape: Shape, text: str) -> Any:
    """A scalar sent as text (query form, REST label/query/header) as its shape's type;
    text that is not of that type stays text (the operation's own parsing answers it)."""
    try:
        if shape.type_name in _INTEGERS:
            return int(text)
        if shape.type_name in _FLOATS:
            return float(text)
    except ValueError:
        return text
    if shape.type_name == "boolean" and text in ("true", "false"):
        return text == "true"
    return text


def rest_value(shape: Shape, values: list[str]) -> Any:
    """A REST query-string member (all its values) or label/header (one value)."""
    if isinstance(shape, ListShape):
        return [typed(shape.member, value) for value in values]
    return typed(shape, values[0])


def cbor_params(shape: StructureShape | None, body: bytes) -> dict[str, Any] | None:
    """The input of a Smithy RPC v2 CBOR request (botocore's decoder reads the body); None
    when the body is no CBOR map."""
    if shape is None or not body:
        return {}
    parser = RpcV2CBORParser()
    try:
        decoded = parser.parse_data_item(parser.get_peekable_stream_from_bytes(body))
    except (ResponseParserError, ValueError, IndexError):
        return None
    if not isinstance(decoded, dict):
        return None
    return {k: v for k, v in decoded.items() if k in shape.members}
