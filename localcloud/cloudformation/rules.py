"""The template's ``Rules``, evaluated the way CloudFormation does before it creates anything.

A rule whose ``RuleCondition`` holds (or that has none) must have every ``Assert`` true;
the first false one fails the deployment with its ``AssertDescription``. Rule functions
compare strings: ``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or``, ``Fn::Contains``,
``Fn::EachMemberEquals``, ``Fn::EachMemberIn`` and ``Ref`` to parameters. ``Fn::ValueOf``
and ``Fn::RefAll`` read AWS-specific parameter types from the account: not available locally.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from localcloud.cloudformation.intrinsics import TemplateError


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


class _Evaluator:
    def __init__(self, parameters: Mapping[str, Any], pseudo: Mapping[str, Any]) -> None:
        self._parameters = parameters
        self._pseudo = pseudo

    def value(self, node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                if arg in self._parameters:
                    return self._parameters[arg]
                if arg in self._pseudo:
                    return self._pseudo[arg]
                raise TemplateError(f"Rules: Ref {arg} is not a parameter")
            if key.startswith("Fn::"):
                return self.truth(node)
        if isinstance(node, list):
            return [self.value(item) for item in node]
        return node

    def _strings(self, node: Any) -> list[str]:
        value = self.value(node)
        items = value if isinstance(value, list) else str(value).split(",")
        return [_text(item) for item in items]

    def truth(self, node: Any) -> bool:
        if not (isinstance(node, dict) and len(node) == 1):
            raise TemplateError(f"Rules: unsupported expression {node!r}")
        ((key, arg),) = node.items()
        if key == "Fn::Equals":
            left, right = (self.value(a) for a in arg)
            return _text(left) == _text(right)
        if key == "Fn::Not":
            return not self.truth(arg[0])
        if key == "Fn::And":
            return all(self.truth(a) for a in arg)
        if key == "Fn::Or":
            return any(self.truth(a) for a in arg)
        if key == "Fn::Contains":
            return _text(self.value(arg[1])) in self._strings(arg[0])
        if key == "Fn::EachMemberEquals":
            return all(item == _text(self.value(arg[1])) for item in self._strings(arg[0]))
        if key == "Fn::EachMemberIn":
            allowed = set(self._strings(arg[1]))
            return all(item in allowed for item in self._strings(arg[0]))
        raise TemplateError(f"Rules: {key} is not available in the local cloud")


def check_rules(
    rules: Mapping[str, Any], parameters: Mapping[str, Any], pseudo: Mapping[str, Any]
) -> None:
    """Raise TemplateError (CloudFormation's ValidationError) for the first failed assertion."""
    evaluator = _Evaluator(parameters, pseudo)
    for name, rule in rules.items():
        condition = rule.get("RuleCondition")
        if condition is not None and not evaluator.truth(condition):
            continue
        for assertion in rule.get("Assertions", []):
            if not evaluator.truth(assertion["Assert"]):
                description = assertion.get("AssertDescription") or f"rule {name} failed"
                raise TemplateError(f"template rule {name}: {description}")
