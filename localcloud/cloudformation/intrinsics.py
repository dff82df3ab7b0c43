"""CloudFormation intrinsic functions, conditions and parameters, resolved the way CFN does.

The resolver is pure: physical names and ARNs of resources come from a callback
(``Names``) so that resolving a value never needs a deployed resource.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

ACCOUNT_ID = "123456789012"

# Marker for AWS::NoValue: removed from the enclosing object or list.
NO_VALUE = object()


class TemplateError(ValueError):
    """The template (or an override) is invalid or uses something the local cloud lacks."""


class Names(Protocol):
    def ref(self, logical_id: str) -> Any: ...

    def get_att(self, logical_id: str, attribute: str) -> Any: ...


@dataclass(frozen=True)
class Pseudo:
    region: str
    stack_name: str
    account_id: str = ACCOUNT_ID

    @property
    def partition(self) -> str:
        if self.region.startswith("cn-"):
            return "aws-cn"
        if self.region.startswith("us-gov-"):
            return "aws-us-gov"
        return "aws"

    @property
    def url_suffix(self) -> str:
        return "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com"

    def values(self) -> dict[str, Any]:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": self.partition,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (
                f"arn:{self.partition}:cloudformation:{self.region}:{self.account_id}:"
                f"stack/{self.stack_name}/00000000-0000-0000-0000-000000000000"
            ),
            "AWS::URLSuffix": self.url_suffix,
            "AWS::NotificationARNs": [],
        }


def resolve_parameters(declared: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter values: overrides, else defaults, checked against the declared constraints."""
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"parameter override(s) not declared in the template: {unknown}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in overrides:
            raw = overrides[name]
        elif "Default" in spec:
            raw = spec["Default"]
        else:
            raise TemplateError(f"parameter {name} has no Default and no override")
        values[name] = _check_parameter(name, spec, raw)
    return values


def _check_parameter(name: str, spec: Mapping[str, Any], raw: Any) -> Any:
    kind = spec.get("Type", "String")
    text = ",".join(map(str, raw)) if isinstance(raw, list) else str(raw)
    if isinstance(raw, bool):
        text = str(raw).lower()
    if kind == "Number":
        try:
            number = float(text)
        except ValueError:
            raise TemplateError(f"parameter {name}: {text!r} is not a number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise TemplateError(f"parameter {name}: {text} is below MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise TemplateError(f"parameter {name}: {text} is above MaxValue {spec['MaxValue']}")
    allowed = spec.get("AllowedValues")
    items = [t.strip() for t in text.split(",")] if kind.startswith("List<") else [text]
    if kind == "CommaDelimitedList":
        items = [t.strip() for t in text.split(",")]
    for item in items:
        if allowed is not None and item not in [str(a) for a in allowed]:
            raise TemplateError(f"parameter {name}: {item!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(pattern, item):
            raise TemplateError(f"parameter {name}: {item!r} does not match {pattern!r}")
    if "MinLength" in spec and len(text) < int(spec["MinLength"]):
        raise TemplateError(f"parameter {name}: shorter than MinLength {spec['MinLength']}")
    if "MaxLength" in spec and len(text) > int(spec["MaxLength"]):
        raise TemplateError(f"parameter {name}: longer than MaxLength {spec['MaxLength']}")
    if kind == "CommaDelimitedList" or kind.startswith("List<"):
        return items
    return text


class Resolver:
    """Evaluates Ref, Fn::* and Condition against parameters, pseudo parameters and names."""

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any],
        pseudo: Pseudo,
        names: Names,
    ) -> None:
        self._template = template
        self._parameters = dict(parameters)
        self._pseudo = pseudo.values()
        self._names = names
        self._conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()

    # -- conditions -------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if name in self._conditions:
            return self._conditions[name]
        declared = self._template.get("Conditions", {})
        if name not in declared:
            raise TemplateError(f"condition {name} is not declared under Conditions")
        if name in self._evaluating:
            raise TemplateError(f"condition {name} refers to itself")
        self._evaluating.add(name)
        try:
            result = self._truth(declared[name])
        finally:
            self._evaluating.discard(name)
        self._conditions[name] = result
        return result

    def _truth(self, node: Any) -> bool:
        if isinstance(node, dict) and len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Equals":
                left, right = (self.value(a) for a in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self._truth(arg[0])
            if key == "Fn::And":
                return all(self._truth(a) for a in arg)
            if key == "Fn::Or":
                return any(self._truth(a) for a in arg)
        raise TemplateError(f"unsupported condition expression: {node!r}")

    # -- values -------------------------------------------------------------------------
    def value(self, node: Any) -> Any:
        """The fully resolved value of ``node``; AWS::NoValue entries are dropped."""
        if isinstance(node, dict):
            if len(node) == 1:
                ((key, arg),) = node.items()
                if key == "Ref":
                    return self.ref(arg)
                if key.startswith("Fn::"):
                    return self._function(key, arg)
                if key == "Condition" and isinstance(arg, str):
                    return self.condition(arg)
            resolved = {k: self.value(v) for k, v in node.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(node, list):
            return [v for v in (self.value(item) for item in node) if v is not NO_VALUE]
        return node

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self._pseudo:
            return self._pseudo[name]
        if name in self._parameters:
            return self._parameters[name]
        return self._names.ref(name)

    def _function(self, key: str, arg: Any) -> Any:
        handler = _FUNCTIONS.get(key)
        if handler is None:
            raise TemplateError(f"intrinsic function {key} is not supported by the local cloud")
        return handler(self, arg)

    def _get_att(self, arg: Any) -> Any:
        if isinstance(arg, str):
            logical_id, _, attribute = arg.partition(".")
        else:
            logical_id, attribute = arg[0], self.value(arg[1])
        return self._names.get_att(logical_id, attribute)

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.value(v) for k, v in arg[1].items()}
        else:
            text, variables = arg, {}

        def replace(match: re.Match[str]) -> str:
            inner = match.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            if inner in variables:
                return str(variables[inner])
            if "." in inner and not inner.startswith("AWS::"):
                logical_id, attribute = inner.split(".", 1)
                return str(self._names.get_att(logical_id, attribute))
            value = self.ref(inner)
            if value is NO_VALUE:
                raise TemplateError(f"Fn::Sub cannot substitute AWS::NoValue in {text!r}")
            return ",".join(value) if isinstance(value, list) else str(value)

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def _if(self, arg: Any) -> Any:
        name, when_true, when_false = arg
        return self.value(when_true if self.condition(name) else when_false)

    def _join(self, arg: Any) -> str:
        delimiter, items = arg[0], self.value(arg[1])
        return delimiter.join(str(i) for i in items)

    def _select(self, arg: Any) -> Any:
        index, items = int(self.value(arg[0])), self.value(arg[1])
        if not 0 <= index < len(items):
            raise TemplateError(f"Fn::Select index {index} is out of range for {items!r}")
        return items[index]

    def _split(self, arg: Any) -> list[str]:
        return str(self.value(arg[1])).split(arg[0])

    def _find_in_map(self, arg: Any) -> Any:
        map_name, top, second = (self.value(a) for a in arg[:3])
        try:
            return self._template["Mappings"][map_name][top][second]
        except KeyError:
            raise TemplateError(f"Fn::FindInMap: no {map_name}.{top}.{second}") from None

    def _base64(self, arg: Any) -> str:
        return base64.b64encode(str(self.value(arg)).encode()).decode()

    def _get_azs(self, arg: Any) -> list[str]:
        region = self.value(arg) or self._pseudo["AWS::Region"]
        return [f"{region}{zone}" for zone in "abc"]


_FUNCTIONS = {
    "Fn::GetAtt": Resolver._get_att,
    "Fn::Sub": Resolver._sub,
    "Fn::If": Resolver._if,
    "Fn::Join": Resolver._join,
    "Fn::Select": Resolver._select,
    "Fn::Split": Resolver._split,
    "Fn::FindInMap": Resolver._find_in_map,
    "Fn::Base64": Resolver._base64,
    "Fn::GetAZs": Resolver._get_azs,
    "Fn::Equals": lambda self, arg: self._truth({"Fn::Equals": arg}),
    "Fn::Not": lambda self, arg: self._truth({"Fn::Not": arg}),
    "Fn::And": lambda self, arg: self._truth({"Fn::And": arg}),
    "Fn::Or": lambda self, arg: self._truth({"Fn::Or": arg}),
}
