"""CloudFormation's view of the stack the local cloud deployed: DescribeStacks (with the
template's parameters and outputs), ListStackResources, DescribeStackResources and
DescribeStackResource answer for it, so scripts written for AWS find the stack's resources
the way they do there (``aws cloudformation describe-stacks --stack-name ...`` for the
outputs; SAM's integration tests list the stack's resources by logical id).

The local cloud deploys the template itself (localcloud.cloudformation.deployer), not through moto's
CloudFormation, which would create every resource a second time. The stack's record lives
here; moto's CloudFormation responses consult it first, and answer as before for any other
stack name (moto internals: moto is pinned).
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localcloud.cloudformation.stack import Stack

COMPLETE = "CREATE_COMPLETE"
_deployed: DeployedStack | None = None  # the stack this process deployed


@dataclass(frozen=True)
class StackResource:
    logical_id: str
    physical_id: str
    type: str


@dataclass(frozen=True)
class DeployedStack:
    stack_id: str
    name: str
    created: datetime.datetime
    parameters: dict[str, str]
    outputs: dict[str, str]
    resources: list[StackResource]

    def names(self, name_or_id: str) -> bool:
        return name_or_id in (self.name, self.stack_id)

    def description(self) -> dict[str, Any]:
        """A DescribeStacks ``Stack`` as AWS returns it once the stack is created."""
        return {
            "StackId": self.stack_id,
            "StackName": self.name,
            "CreationTime": self.created,
            "StackStatus": COMPLETE,
            "DisableRollback": False,
            "Parameters": [
                {"ParameterKey": k, "ParameterValue": v} for k, v in self.parameters.items()
            ],
            "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()],
            "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
            "Tags": {},  # moto turns the dict into Key/Value pairs
            "DriftInformation": {"StackDriftStatus": "NOT_CHECKED"},
        }

    def summary(self, resource: StackResource) -> dict[str, Any]:
        """A ListStackResources ``StackResourceSummary``."""
        return {
            "LogicalResourceId": resource.logical_id,
            "PhysicalResourceId": resource.physical_id,
            "ResourceType": resource.type,
            "LastUpdatedTimestamp": self.created,
            "ResourceStatus": COMPLETE,
            "DriftInformation": {"StackResourceDriftStatus": "NOT_CHECKED"},
        }

    def detail(self, resource: StackResource) -> dict[str, Any]:
        """A DescribeStackResources ``StackResource`` (DescribeStackResource's detail
        carries the same fields)."""
        return {
            "StackName": self.name,
            "StackId": self.stack_id,
            "LogicalResourceId": resource.logical_id,
            "PhysicalResourceId": resource.physical_id,
            "ResourceType": resource.type,
            "Timestamp": self.created,
            "LastUpdatedTimestamp": self.created,
            "ResourceStatus": COMPLETE,
            "DriftInformation": {"StackResourceDriftStatus": "NOT_CHECKED"},
        }


def record(stack: Stack) -> DeployedStack:
    """The deployed stack as CloudFormation describes it: every resource with the physical
    id CloudFormation reports for its type (a name, an ARN or an id)."""
    resources = [StackResource(r.logical_id, r.name or r.arn, r.type) for r in stack.resources]
    resources += [
        StackResource(f.logical_id, f.name, "AWS::Lambda::Function") for f in stack.functions
    ]
    resources += [
        StackResource(layer.logical_id, layer.arn, "AWS::Lambda::LayerVersion")
        for layer in stack.layers
    ]
    resources += [
        StackResource(m.logical_id, m.arn, "AWS::StepFunctions::StateMachine")
        for m in stack.state_machines
    ]
    resources += [
        StackResource(logical_id, api_id, "AWS::ApiGatewayV2::Api")
        for logical_id, api_id in stack.http_apis.items()
    ]
    return DeployedStack(
        stack_id=(
            f"arn:aws:cloudformation:{stack.region}:{stack.account_id}:stack/{stack.name}/"
            f"{uuid.uuid4()}"
        ),
        name=stack.name,
        created=datetime.datetime.now(datetime.UTC),
        parameters={k: _text(v) for k, v in stack.parameters.items()},
        outputs={k: _text(v) for k, v in stack.outputs.items()},
        resources=sorted(resources, key=lambda r: r.logical_id),
    )


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def install(stack: Stack) -> None:
    """Answer CloudFormation's describe and list calls for ``stack`` in this process."""
    global _deployed
    _deployed = record(stack)
    from moto.cloudformation.responses import CloudFormationResponse
    from moto.core.responses import ActionResult

    def answering(name: str, answer: Callable[[Any, DeployedStack], dict[str, Any]]) -> None:
        original = getattr(CloudFormationResponse, f"_localcloud_{name}", None) or getattr(
            CloudFormationResponse, name
        )
        setattr(CloudFormationResponse, f"_localcloud_{name}", original)

        def method(self: Any) -> Any:
            wanted = self._get_param("StackName")
            deployed = _deployed
            if deployed is None or (wanted and not deployed.names(wanted)):
                return original(self)
            return ActionResult(answer(self, deployed))

        setattr(CloudFormationResponse, name, method)

    answering("describe_stacks", lambda _, d: {"Stacks": [d.description()]})
    answering(
        "list_stack_resources",
        lambda _, d: {"StackResourceSummaries": [d.summary(r) for r in d.resources]},
    )
    answering("describe_stack_resources", _stack_resources)
    answering("describe_stack_resource", _stack_resource)


def _stack_resources(response: Any, deployed: DeployedStack) -> dict[str, Any]:
    wanted = response._get_param("LogicalResourceId")
    chosen = [r for r in deployed.resources if wanted in (None, r.logical_id)]
    return {"StackResources": [deployed.detail(r) for r in chosen]}


def _stack_resource(response: Any, deployed: DeployedStack) -> dict[str, Any]:
    from moto.cloudformation.exceptions import ValidationError

    wanted = response._get_param("LogicalResourceId")
    for resource in deployed.resources:
        if resource.logical_id == wanted:
            return {"StackResourceDetail": deployed.detail(resource)}
    raise ValidationError(
        deployed.name, f"Resource {wanted} does not exist for stack {deployed.name}"
    )


def uninstall() -> None:
    global _deployed
    _deployed = None
