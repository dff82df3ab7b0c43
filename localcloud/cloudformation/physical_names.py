"""Physical names, ARNs, Refs and GetAtts of a template's resources, chosen as CloudFormation
chooses them (a stack-and-id prefix and a hash suffix: deterministic locally)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from localcloud.cloudformation.intrinsics import Pseudo, Resolver, TemplateError
from localcloud.cloudformation.stack import (
    IMPLICIT_HTTP_API,
    SAM_FUNCTION,
    SAM_HTTP_API,
    SAM_LAYER,
    SAM_STATE_MACHINE,
)


class PhysicalNames:
    """Physical names and attributes, chosen like CloudFormation (deterministic locally)."""

    def __init__(self, template: Mapping[str, Any], pseudo: Pseudo) -> None:
        self._resources: dict[str, Any] = template.get("Resources", {})
        self._pseudo = pseudo
        self.resolver: Resolver
        self._cache: dict[str, str] = {}

    def _suffix(self, logical_id: str) -> str:
        digest = hashlib.sha256(f"{self._pseudo.stack_name}/{logical_id}".encode()).hexdigest()
        return digest[:12].upper()

    def _generated(self, logical_id: str, limit: int) -> str:
        prefix = f"{self._pseudo.stack_name}-{logical_id}"[: limit - 13]
        return f"{prefix}-{self._suffix(logical_id)}"

    def name(self, logical_id: str) -> str:
        if logical_id in self._cache:
            return self._cache[logical_id]
        if implicit_role_owner(logical_id, self._resources):
            return self._generated(logical_id, 64)
        if logical_id == IMPLICIT_HTTP_API:
            return self._api_id(logical_id)
        event = implicit_rule_event(logical_id, self._resources)
        if event is not None:
            given = event.get("Properties", {}).get("RuleName")
            name = str(self.resolver.value(given)) if given else self._generated(logical_id, 64)
            self._cache[logical_id] = name
            return name
        resource = self._resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"Ref/GetAtt to unknown resource {logical_id}")
        kind = resource["Type"]
        props = resource.get("Properties", {})
        explicit = NAME_PROPERTY.get(kind)
        if explicit and explicit in props:
            name = str(self.resolver.value(props[explicit]))
        elif kind == "AWS::S3::Bucket":
            name = self._generated(logical_id, 63).lower()
        elif kind == SAM_HTTP_API:
            name = self._api_id(logical_id)
        elif kind == "AWS::Logs::LogGroup":
            name = self._generated(logical_id, 512)
        else:
            name = self._generated(logical_id, 64)
        self._cache[logical_id] = name
        return name

    def _api_id(self, logical_id: str) -> str:
        return self._suffix(logical_id).lower()[:10]

    def _arn(self, service: str, resource: str, region: bool = True) -> str:
        p = self._pseudo
        where = f"{p.region}:{p.account_id}" if region else f":{p.account_id}"
        return f"arn:{p.partition}:{service}:{where}:{resource}"

    def arn(self, logical_id: str) -> str:
        kind = self.type_of(logical_id)
        name = self.name(logical_id)
        if kind == "AWS::S3::Bucket":
            return f"arn:{self._pseudo.partition}:s3:::{name}"
        if kind == "AWS::IAM::Role":
            return self._arn("iam", f"role/{name}", region=False)
        if kind in ("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"):
            return self._arn("dynamodb", f"table/{name}")
        if kind == "AWS::Logs::LogGroup":
            return self._arn("logs", f"log-group:{name}:*")
        if kind == SAM_FUNCTION:
            return self._arn("lambda", f"function:{name}")
        if kind == SAM_LAYER:
            return self._arn("lambda", f"layer:{name}:1")
        if kind == SAM_STATE_MACHINE:
            return self._arn("states", f"stateMachine:{name}")
        if kind == "AWS::SNS::Topic":
            return self._arn("sns", name)
        if kind == "AWS::SQS::Queue":
            return self._arn("sqs", name)
        if kind == "AWS::Events::Rule":
            return self._arn("events", f"rule/{name}")
        if kind == "AWS::IAM::ManagedPolicy":
            return self._arn("iam", f"policy/{name}", region=False)
        if kind == "AWS::CloudWatch::Alarm":
            return self._arn("cloudwatch", f"alarm:{name}")
        if kind == "AWS::SageMaker::ModelPackageGroup":
            return self._arn("sagemaker", f"model-package-group/{name.lower()}")
        raise TemplateError(f"{logical_id} ({kind}) has no ARN in the local cloud")

    def type_of(self, logical_id: str) -> str:
        if implicit_role_owner(logical_id, self._resources):
            return "AWS::IAM::Role"
        if implicit_rule_event(logical_id, self._resources) is not None:
            return "AWS::Events::Rule"
        if logical_id == IMPLICIT_HTTP_API:
            return SAM_HTTP_API
        if logical_id not in self._resources:
            raise TemplateError(f"Ref/GetAtt to unknown resource {logical_id}")
        return self._resources[logical_id]["Type"]

    def ref(self, logical_id: str) -> Any:
        kind = self.type_of(logical_id)
        if kind in (SAM_LAYER, SAM_STATE_MACHINE, "AWS::SNS::Topic", "AWS::IAM::ManagedPolicy"):
            return self.arn(logical_id)
        if kind == "AWS::SQS::Queue":
            p = self._pseudo
            return f"https://sqs.{p.region}.{p.url_suffix}/{p.account_id}/{self.name(logical_id)}"
        return self.name(logical_id)

    def get_att(self, logical_id: str, attribute: str) -> Any:
        kind = self.type_of(logical_id)
        name = self.name(logical_id)
        p = self._pseudo
        special = {
            ("AWS::S3::Bucket", "DomainName"): f"{name}.s3.{p.url_suffix}",
            ("AWS::S3::Bucket", "RegionalDomainName"): f"{name}.s3.{p.region}.{p.url_suffix}",
            (SAM_STATE_MACHINE, "Name"): name,
            ("AWS::SNS::Topic", "TopicName"): name,
            ("AWS::SNS::Topic", "TopicArn"): self.arn(logical_id)
            if kind == "AWS::SNS::Topic"
            else None,
            ("AWS::SQS::Queue", "QueueName"): name,
            ("AWS::IAM::Role", "RoleId"): f"AROA{self._suffix(logical_id)}",
            (SAM_HTTP_API, "ApiId"): name,
            (SAM_HTTP_API, "ApiEndpoint"): f"https://{name}.execute-api.{p.region}.{p.url_suffix}",
        }
        if (kind, attribute) in special:
            return special[(kind, attribute)]
        if attribute == "Arn":
            return self.arn(logical_id)
        raise TemplateError(f"Fn::GetAtt {logical_id}.{attribute} ({kind}) is not supported")


NAME_PROPERTY = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Events::Rule": "Name",
    "AWS::SageMaker::ModelPackageGroup": "ModelPackageGroupName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    SAM_FUNCTION: "FunctionName",
    SAM_LAYER: "LayerName",
    SAM_STATE_MACHINE: "Name",
}


def implicit_rule_event(logical_id: str, resources: Mapping[str, Any]) -> dict[str, Any] | None:
    """SAM creates the rule ``<Id><Event>`` for an EventBridge event of a function or state
    machine (referable by that logical id, as on AWS); the event, or None."""
    if logical_id in resources:
        return None
    for owner_id, owner in resources.items():
        if owner.get("Type") not in (SAM_FUNCTION, SAM_STATE_MACHINE):
            continue
        if not logical_id.startswith(owner_id):
            continue
        event = owner.get("Properties", {}).get("Events", {}).get(logical_id[len(owner_id) :])
        if isinstance(event, dict) and event.get("Type") in ("EventBridgeRule", "CloudWatchEvent"):
            return event
    return None


def implicit_role_owner(logical_id: str, resources: Mapping[str, Any]) -> str | None:
    """SAM creates ``<Id>Role`` for a function or state machine that names no Role."""
    if not logical_id.endswith("Role") or logical_id in resources:
        return None
    owner = resources.get(logical_id[: -len("Role")])
    if (
        owner
        and owner["Type"] in (SAM_FUNCTION, SAM_STATE_MACHINE)
        and "Role" not in owner.get("Properties", {})
    ):
        return logical_id[: -len("Role")]
    return None
