"""CloudFormation's YAML: PyYAML's safe loader plus the short forms of the intrinsic
functions (``!Ref X``, ``!GetAtt A.B``, ``!Sub ...``), read into their long forms
(``{"Ref": "X"}``, ``{"Fn::GetAtt": ["A", "B"]}``, ``{"Fn::Sub": ...}``) as CloudFormation
reads them. As in CloudFormation, dates stay strings (``Version: 2012-10-17``) and a key
given twice in one mapping is an error.

cfn-lint's decoder did this before; importing it cost the local cloud 0.4 s of its start.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

# Short forms whose long form is "Fn::<name>"; Ref and Condition keep their own keys.
FUNCTIONS = (
    "And", "Base64", "Cidr", "Equals", "FindInMap", "GetAZs", "If", "ImportValue", "Join",
    "Length", "Not", "Or", "Select", "Split", "Sub", "ToJsonString", "Transform",
)  # fmt: skip


class TemplateSyntaxError(ValueError):
    """Not a CloudFormation YAML template: the message says where and why."""


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's parser where PyYAML has it (~15x faster on template.yaml)."""


# CloudFormation keeps dates as strings: drop PyYAML's timestamp resolver.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _where(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}"


def _value(loader: SafeConstructor, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


def _get_att(loader: SafeConstructor, node: yaml.Node) -> dict[str, Any]:
    value = _value(loader, node)
    if isinstance(value, str):  # !GetAtt Resource.Attribute (the attribute may hold dots)
        resource, dot, attribute = value.partition(".")
        if not dot:
            raise TemplateSyntaxError(f"!GetAtt {value!r} ({_where(node)}): expected A.B")
        value = [resource, attribute]
    return {"Fn::GetAtt": value}


def _mapping(loader: SafeConstructor, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise TemplateSyntaxError(f"duplicate key {key!r} ({_where(key_node)})")
        seen.add(key)
    return SafeConstructor.construct_mapping(loader, node, deep=deep)


_Loader.construct_mapping = _mapping  # type: ignore[assignment,method-assign]
_Loader.add_constructor("!Ref", lambda loader, node: {"Ref": _value(loader, node)})
_Loader.add_constructor("!Condition", lambda loader, node: {"Condition": _value(loader, node)})
_Loader.add_constructor("!GetAtt", _get_att)
for _name in FUNCTIONS:
    _Loader.add_constructor(
        f"!{_name}", lambda loader, node, key=f"Fn::{_name}": {key: _value(loader, node)}
    )


def load(path: Path) -> dict[str, Any]:
    """The template at ``path`` as plain dicts, lists and scalars."""
    try:
        template = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as exc:
        raise TemplateSyntaxError(
            re.sub(r"\s+", " ", str(exc)).replace('"<unicode string>", ', "")
        ) from None
    except OSError as exc:
        raise TemplateSyntaxError(f"cannot read it: {exc.strerror}") from None
    if not isinstance(template, dict):
        raise TemplateSyntaxError("the top level is not a mapping")
    return template
