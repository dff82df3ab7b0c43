"""Map recorded botocore calls to the IAM permissions they need, and check them
against a function's statements in template.yaml (resources resolved with test values)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.conftest import ACCOUNT, REGION
from tests.template_support import allowed, function_statements

_SAGEMAKER_RESOURCES = (
    ("TrainingJobName", "training-job"),
    ("EndpointName", "endpoint"),
    ("EndpointConfigName", "endpoint-config"),
    ("ModelName", "model"),
)
_IAM_PREFIX = {"stepfunctions": "states"}


@dataclass(frozen=True)
class Call:
    service: str
    operation: str
    params: dict[str, Any] = field(hash=False)


Permission = tuple[str, str, dict[str, str]]


def _sagemaker(call: Call) -> list[Permission]:
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    resources = [
        f"{arn}:{kind}/{call.params[param]}".lower()  # SageMaker ARNs are lower case
        for param, kind in _SAGEMAKER_RESOURCES
        if param in call.params
    ]
    needed = [(f"sagemaker:{call.operation}", r, {}) for r in resources]
    if call.params.get("Tags"):
        needed.append(("sagemaker:AddTags", resources[0], {}))
    for role in ("RoleArn", "ExecutionRoleArn"):
        if role in call.params:
            needed.append(
                (
                    "iam:PassRole",
                    call.params[role],
                    {"iam:PassedToService": "sagemaker.amazonaws.com"},
                )
            )
    return needed


def _s3(call: Call) -> list[Permission]:
    bucket = call.params["Bucket"]
    if call.operation == "ListObjectsV2":
        return [
            (
                "s3:ListBucket",
                f"arn:aws:s3:::{bucket}",
                {"s3:prefix": call.params.get("Prefix", "")},
            )
        ]
    obj = f"arn:aws:s3:::{bucket}/{call.params['Key']}"
    action = {"HeadObject": "GetObject"}.get(call.operation, call.operation)
    needed = [(f"s3:{action}", obj, {})]
    if call.params.get("VersionId"):
        needed.append(("s3:GetObjectVersion", obj, {}))
    return needed


def required_permissions(call: Call) -> list[Permission]:
    if call.service == "sagemaker":
        return _sagemaker(call)
    if call.service == "s3":
        return _s3(call)
    if call.service == "application-autoscaling":
        context = {"application-autoscaling:service-namespace": call.params["ServiceNamespace"]}
        if "ScalableDimension" in call.params:
            context["application-autoscaling:scalable-dimension"] = call.params["ScalableDimension"]
        return [(f"application-autoscaling:{call.operation}", "*", context)]
    if call.service == "dynamodb":
        table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{call.params['TableName']}"
        return [(f"dynamodb:{call.operation}", table, {})]
    if call.service == "stepfunctions":
        return [(f"states:{call.operation}", call.params["executionArn"], {})]
    if call.service == "lambda" and call.operation == "Invoke":
        name = call.params["FunctionName"]
        arn = (
            name
            if name.startswith("arn:")
            else f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        )
        return [("lambda:InvokeFunction", arn, {})]
    raise AssertionError(
        f"no IAM mapping for {call.service}:{call.operation}; add one to tests/iam.py"
    )


def denied_calls(function: str, calls: list[Call]) -> list[str]:
    """Each permission a recorded call needs that the function's role does not grant."""
    statements = function_statements(function)
    return [
        f"{call.service}:{call.operation} needs {action} on {resource} {context or ''}".strip()
        for call in calls
        for action, resource, context in required_permissions(call)
        if not allowed(statements, action, resource, context)
    ]
