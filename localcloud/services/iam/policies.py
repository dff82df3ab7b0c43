"""The policies of each role a stack creates, as CloudFormation and the SAM transform make them.

- A function's or state machine's ``Policies`` become its generated role's inline policies
  (``<Id>RolePolicy<n>``): inline statements as written, SAM policy templates expanded with
  samtranslator's own templates, names of AWS managed policies attached by ARN; SAM adds
  AWSLambdaBasicExecutionRole to every function role and AWSXrayWriteOnlyAccess with
  ``Tracing: Active``.
- An ``AWS::IAM::Role``'s ``Policies`` and ``ManagedPolicyArns``.
- The role SAM generates for a state machine's EventBridgeRule event: ``states:StartExecution``
  on that state machine.
AWS managed policies are known here only for the few SAM attaches (their documents below);
any other managed policy grants nothing locally, and ``unknown_managed`` names them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from localcloud.services.iam.authorize import policy_documents

_VERSION = "2012-10-17"
_MANAGED_PREFIX = "arn:aws:iam::aws:policy/"
# The AWS managed policies SAM attaches to generated roles (documents as AWS publishes them).
MANAGED_POLICIES: dict[str, dict[str, Any]] = {
    "service-role/AWSLambdaBasicExecutionRole": {
        "Version": _VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": "*",
            }
        ],
    },
    "AWSXrayWriteOnlyAccess": {
        "Version": _VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                    "xray:GetSamplingStatisticSummaries",
                ],
                "Resource": "*",
            }
        ],
    },
}


@cache
def _templates() -> Any:
    from samtranslator.policy_template_processor.processor import PolicyTemplatesProcessor

    return PolicyTemplatesProcessor(PolicyTemplatesProcessor.get_default_policy_templates_json())


def managed_arn(name_or_arn: str, partition: str = "aws") -> str:
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    return f"arn:{partition}:iam::aws:policy/{name_or_arn}"


def sam_role_properties(
    role_lid: str,
    policies: Any,
    resolve: Callable[[Any], Any],
    *,
    function: bool,
    tracing: bool,
) -> dict[str, Any]:
    """``Policies`` and ``ManagedPolicyArns`` of the role SAM generates for a resource."""
    items = policies if isinstance(policies, list) else [policies] if policies else []
    inline: list[dict[str, Any]] = []
    managed: list[str] = []
    if function:
        managed.append(managed_arn("service-role/AWSLambdaBasicExecutionRole"))
    if tracing:
        managed.append(managed_arn("AWSXrayWriteOnlyAccess"))
    for index, item in enumerate(items):
        name = f"{role_lid}Policy{index}"
        if isinstance(item, str):
            managed.append(managed_arn(item))
        elif isinstance(item, dict) and "Statement" in item:
            inline.append({"PolicyName": name, "PolicyDocument": {"Version": _VERSION, **item}})
        elif isinstance(item, dict) and len(item) == 1 and _templates().has(next(iter(item))):
            ((template, values),) = item.items()
            document = _templates().convert(template, values or {})
            inline.append(
                {"PolicyName": name, "PolicyDocument": {"Version": _VERSION, **resolve(document)}}
            )
        else:
            inline.append({"PolicyName": name, "PolicyDocument": {"Version": _VERSION, **item}})
    return {"Policies": inline, "ManagedPolicyArns": managed}


def _role_entries(properties: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    entries: list[tuple[str, Mapping[str, Any]]] = []
    for policy in properties.get("Policies") or []:
        entries.append((str(policy.get("PolicyName", "inline")), policy["PolicyDocument"]))
    for arn in properties.get("ManagedPolicyArns") or []:
        name = str(arn).split(":policy/", 1)[-1]
        if name in MANAGED_POLICIES:
            entries.append((name, MANAGED_POLICIES[name]))
    return entries


def unknown_managed(properties: Mapping[str, Any]) -> list[str]:
    arns = properties.get("ManagedPolicyArns") or []
    return [str(a) for a in arns if str(a).split(":policy/", 1)[-1] not in MANAGED_POLICIES]


def role_policies(stack: Any) -> dict[str, tuple[Mapping[str, Any], ...]]:
    """Role ARN -> its identity policies (the simulator's ``{"name", "policy"}`` entries)."""
    roles: dict[str, tuple[Mapping[str, Any], ...]] = {}
    for resource in stack.of_type("AWS::IAM::Role"):
        roles[resource.arn] = policy_documents(_role_entries(resource.properties))
    for rule in stack.rules:
        if rule.role_arn and rule.role_arn not in roles:  # SAM's generated rule role
            start = {
                "Version": _VERSION,
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "states:StartExecution",
                        "Resource": rule.target_arn,
                    }
                ],
            }
            roles[rule.role_arn] = policy_documents([("StartExecutionPolicy", start)])
    return roles
