"""The IAM request context of one AWS API call, built from the call's real parameters.

For a call (botocore service name, operation, parameters) this gives every authorization
AWS makes: the IAM action, the resource ARN (from the Service Authorization Reference's
ARN format for the action's resource types, filled from the parameters) and the condition
keys, restricted to the keys the reference lists for that action. Extra authorizations
follow the call's parameters: ``iam:PassRole`` for a role ARN passed to a service,
``sagemaker:AddTags`` when a SageMaker Create* call carries Tags, and what Application Auto
Scaling does as the caller (CloudWatch alarms of target tracking, the SageMaker variant).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from localcloud.services.iam.evaluator import ActionInfo, Evaluator, evaluator

# botocore service name -> IAM service prefix, where they differ.
SERVICE_PREFIX = {
    "stepfunctions": "states",
    "sagemaker-runtime": "sagemaker",
    "monitoring": "cloudwatch",
}
# Operations whose IAM action has another name (S3 names actions after permissions).
_S3_ACTIONS = {
    "HeadObject": "GetObject",
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "HeadBucket": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "AbortMultipartUpload": "AbortMultipartUpload",
    "GetBucketVersioning": "GetBucketVersioning",
}
_S3_VERSIONED = {"GetObject": "GetObjectVersion", "DeleteObject": "DeleteObjectVersion"}
_ACTIONS = {
    ("lambda", "Invoke"): "InvokeFunction",
    ("lambda", "InvokeWithResponseStream"): "InvokeFunction",
}
# ARN-format variables whose parameter of the same name is not what the ARN holds.
_ARN_VARIABLE_PARAMS = {"BucketName": "Bucket", "ObjectName": "Key"}
# Services whose ARN-format variable is an id AWS generates (not the parameter of that name).
_GENERATED_IDS = {"application-autoscaling": {"ResourceId"}}
# Services that lower-case their resource ARNs.
_LOWER_CASE_ARNS = {"sagemaker"}
# Where a passed role goes: the service that assumes it.
_ROLE_PARAMS = ("RoleArn", "ExecutionRoleArn")


# The alarm name standing for a CloudWatch call that names none (see _on_behalf).
NO_ALARM_NAME = "(no alarm name)"


@dataclass(frozen=True)
class Check:
    """One authorization: may the principal perform ``action`` on ``resource``?

    ``validation``: the service checks it itself, as the caller, before it acts (Application
    Auto Scaling's permissions validation): a denial is the service's ValidationException
    listing the missing permission, not an AccessDenied of the call."""

    action: str
    resource: str
    context: Mapping[str, Any] = field(default_factory=dict, hash=False)
    validation: bool = False


class UnknownAction(Exception):
    """The Service Authorization Reference has no action for this call."""


def iam_service(service: str) -> str:
    return SERVICE_PREFIX.get(service, service)


def action_name(service: str, operation: str, params: Mapping[str, Any]) -> str:
    if service == "s3":
        action = _S3_ACTIONS.get(operation, operation)
        if params.get("VersionId") and action in _S3_VERSIONED:
            action = _S3_VERSIONED[action]
        return action
    return _ACTIONS.get((service, operation), operation)


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]", name))


def _text(value: Any) -> Any:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _format_regex(arn_format: str) -> re.Pattern[str]:
    parts = re.split(r"(\$\{[^}]+\})", arn_format)
    return re.compile(
        "".join("(.+)" if p.startswith("${") else re.escape(p) for p in parts if p) + "$"
    )


def _fill(
    arn_format: str, info: ActionInfo, params: Mapping[str, Any], where: Mapping[str, str]
) -> str | None:
    """The ARN of this resource type for the call, or None if the call does not name one."""
    generated = _GENERATED_IDS.get(info.service, set())
    arn_values = [v for v in params.values() if isinstance(v, str) and v.startswith("arn:")]
    filled = arn_format
    for variable in re.findall(r"\$\{([^}]+)\}", arn_format):
        if variable in where:
            value: Any = where[variable]
        elif variable in generated:
            value = None
        else:
            value = params.get(_ARN_VARIABLE_PARAMS.get(variable, variable))
        if not isinstance(value, str) or not value or value.startswith("arn:"):
            break
        filled = filled.replace("${" + variable + "}", value)
    else:
        return filled
    # A parameter may carry the whole ARN (executionArn, a function ARN as FunctionName).
    pattern = _format_regex(arn_format)
    for value in arn_values:
        if pattern.match(value) and value.split(":")[2] == info.service:
            return value
    return None


def _plural(arn_format: str, params: Mapping[str, Any], where: Mapping[str, str]) -> list[str]:
    """One ARN per element of a list parameter named after the format's variable plus "s"
    (``AlarmNames`` for ``${AlarmName}``): the call acts on each."""
    variables = [v for v in re.findall(r"\$\{([^}]+)\}", arn_format) if v not in where]
    values = params.get(f"{variables[0]}s") if len(variables) == 1 else None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        return []
    filled = arn_format
    for name, value in where.items():
        filled = filled.replace("${" + name + "}", value)
    return [filled.replace("${" + variables[0] + "}", v) for v in values]


def _resources(info: ActionInfo, params: Mapping[str, Any], where: Mapping[str, str]) -> list[str]:
    resources = []
    for arn_format, _required in info.resource_types.values():
        arn = _fill(arn_format, info, params, where)
        if arn is None:
            resources += _plural(arn_format, params, where)
            continue
        if info.service == "lambda" and params.get("Qualifier"):
            arn = f"{arn}:{params['Qualifier']}"
        if info.service in _LOWER_CASE_ARNS:
            arn = arn.lower()
        resources.append(arn)
    return resources or ["*"]


def _tags(params: Mapping[str, Any]) -> dict[str, str]:
    tags = params.get("Tags")
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    if isinstance(tags, list):
        return {str(t["Key"]): str(t.get("Value", "")) for t in tags if "Key" in t}
    return {}


def _context(info: ActionInfo, params: Mapping[str, Any]) -> dict[str, Any]:
    """The condition keys the reference lists for the action, valued from the request."""
    context: dict[str, Any] = {}
    tags = _tags(params)
    for key in info.condition_keys:
        if key == "aws:TagKeys" and tags:
            context[key] = sorted(tags)
        elif key == "aws:RequestTag/${TagKey}":
            context.update({f"aws:RequestTag/{k}": v for k, v in tags.items()})
        elif not key.startswith("aws:") and "$" not in key and "<" not in key:
            param = _pascal(key.split(":", 1)[1])
            if param in params and params[param] is not None:
                context[key] = _text(params[param])
    return context


def required_checks(
    service: str,
    operation: str,
    params: Mapping[str, Any],
    *,
    region: str,
    account: str,
    partition: str = "aws",
    reference: Evaluator | None = None,
) -> list[Check]:
    """Every authorization AWS makes for this call, in the order it makes them."""
    ref = reference or evaluator()
    prefix = iam_service(service)
    where = {"Partition": partition, "Region": region, "Account": account}
    checks: list[Check] = []
    if service == "s3" and operation in ("CopyObject", "UploadPartCopy"):
        # A copy (or a part of one) reads its source and writes its target.
        source = params.get("CopySource", "")
        if isinstance(source, dict):  # boto3's form; on the wire it is bucket/key?versionId=v
            source_params = {k: v for k, v in source.items() if k in ("Bucket", "Key", "VersionId")}
        else:
            path, _, version = unquote(str(source)).lstrip("/").partition("?versionId=")
            bucket, _, key = path.partition("/")
            source_params = {"Bucket": bucket, "Key": key, "VersionId": version or None}
        checks += required_checks(
            "s3", "GetObject", source_params, region=region, account=account, reference=ref
        )
        operation = "PutObject"
    name = action_name(service, operation, params)
    info = ref.action(prefix, name)
    if info is None:
        raise UnknownAction(f"{prefix}:{name} (the {service} {operation} call)")
    context = _context(info, params)
    resources = _resources(info, params, where)
    checks += [Check(info.iam_name, resource, context) for resource in resources]
    for role_param in _ROLE_PARAMS:
        role = params.get(role_param)
        if isinstance(role, str) and role.startswith("arn:"):
            passed_to = f"{prefix}.amazonaws.com"  # the service that will assume it
            checks.append(Check("iam:PassRole", role, {"iam:PassedToService": passed_to}))
    checks += _on_behalf(service, operation, params, where)
    tags = _tags(params)
    if prefix == "sagemaker" and tags and operation.startswith("Create"):
        add_tags = ref.action("sagemaker", "AddTags")
        assert add_tags is not None
        checks.append(Check("sagemaker:AddTags", resources[0], _context(add_tags, params)))
    return checks


def _on_behalf(
    service: str, operation: str, params: Mapping[str, Any], where: Mapping[str, str]
) -> list[Check]:
    """What Application Auto Scaling checks the caller may do before it acts ("Permissions
    validation for API calls on target resources", its user guide): at RegisterScalableTarget
    the target service's calls (the SageMaker variant it will scale) and CloudWatch's, which
    it tries as the caller with no alarm name (PutMetricAlarm, DeleteAlarms: AWS's resource
    is ``alarm:``) or for one record of any alarm (DescribeAlarms: ``alarm:*``, taken
    literally). The evaluator cannot place an empty name and reads a ``*`` in a request as a
    pattern, so these are checked on ``NO_ALARM_NAME``: allowed by a statement on all the
    account's alarms, not by one on some of them (``TargetTracking*``), as on AWS; and the
    alarms of the target-tracking policies it creates and deletes."""
    if service != "application-autoscaling":
        return []
    arn = f"arn:{where['Partition']}:{{service}}:{where['Region']}:{where['Account']}:{{resource}}"
    resource_id = str(params.get("ResourceId", ""))
    # target-tracking alarms are named TargetTracking-<resource id>-AlarmHigh|Low-<uuid>
    alarm = arn.format(
        service="cloudwatch",
        resource=f"alarm:TargetTracking-{resource_id}-AlarmHigh-00000000-0000-0000-0000-000000000000",
    )
    actions: list[tuple[str, str]] = []
    if operation in ("DeregisterScalableTarget", "DeleteScalingPolicy"):
        actions = [(f"cloudwatch:{a}", alarm) for a in ("DescribeAlarms", "DeleteAlarms")]
    if operation == "PutScalingPolicy" and params.get("PolicyType") == "TargetTrackingScaling":
        actions = [(f"cloudwatch:{a}", alarm) for a in ("PutMetricAlarm", "DescribeAlarms")]
    if operation == "RegisterScalableTarget" and params.get("ServiceNamespace") == "sagemaker":
        endpoint = resource_id.split("/")[1] if resource_id.count("/") >= 1 else ""
        variant = arn.format(service="sagemaker", resource=f"endpoint/{endpoint}").lower()
        any_alarm = arn.format(service="cloudwatch", resource=f"alarm:{NO_ALARM_NAME}")
        actions = [
            ("sagemaker:DescribeEndpoint", variant),
            ("sagemaker:UpdateEndpointWeightsAndCapacities", variant),
            ("cloudwatch:PutMetricAlarm", any_alarm),
            ("cloudwatch:DescribeAlarms", any_alarm),
            ("cloudwatch:DeleteAlarms", any_alarm),
        ]
    return [Check(action, resource, validation=True) for action, resource in actions]
