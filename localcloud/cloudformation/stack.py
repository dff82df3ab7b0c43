"""The resolved stack: what CloudFormation + the SAM transform would create from the
template (``localcloud.cloudformation.template`` builds it), as plain data the local cloud deploys
and runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAM_FUNCTION = "AWS::Serverless::Function"
SAM_LAYER = "AWS::Serverless::LayerVersion"
SAM_STATE_MACHINE = "AWS::Serverless::StateMachine"
SAM_HTTP_API = "AWS::Serverless::HttpApi"
IMPLICIT_HTTP_API = "ServerlessHttpApi"


@dataclass(frozen=True)
class Layer:
    logical_id: str
    name: str
    arn: str
    content_dir: Path
    # SAM's BuildMethod python* puts ContentUri under /opt/python; otherwise it is /opt.
    python_layer: bool

    @property
    def sys_path(self) -> Path | None:
        """The directory Lambda's /opt/python maps to, if the layer has one."""
        if self.python_layer:
            return self.content_dir
        candidate = self.content_dir / "python"
        return candidate if candidate.is_dir() else None


@dataclass(frozen=True)
class Route:
    api_id: str
    method: str  # upper case, or ANY
    path: str  # /classify, /items/{id}, /{proxy+} or $default
    payload_format: str
    timeout_ms: int
    authorization: str = "NONE"  # or AWS_IAM: SigV4-signed requests only

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


@dataclass(frozen=True)
class Function:
    logical_id: str
    name: str
    arn: str
    role_arn: str
    code_dir: Path
    handler: str
    runtime: str
    timeout: int
    memory_mb: int
    environment: Mapping[str, str]
    layers: tuple[Layer, ...]
    external_layers: tuple[str, ...]
    reserved_concurrency: int | None
    log_group: str
    routes: tuple[Route, ...]
    alias: str | None = None  # AutoPublishAlias
    provisioned_concurrency: int | None = None  # ProvisionedConcurrencyConfig of the alias


@dataclass(frozen=True)
class EventRule:
    name: str
    arn: str
    bus: str
    pattern: Mapping[str, Any]
    enabled: bool
    target_arn: str
    target_id: str
    role_arn: str
    dead_letter_arn: str | None = None  # the target's DeadLetterConfig (an SQS queue)


@dataclass(frozen=True)
class StateMachine:
    logical_id: str
    name: str
    arn: str
    role_arn: str
    definition: str
    type: str


@dataclass(frozen=True)
class Resource:
    """A plainly deployed resource: its type, physical name and resolved properties."""

    logical_id: str
    type: str
    name: str
    arn: str
    properties: Mapping[str, Any]


@dataclass
class Stack:
    name: str
    region: str
    account_id: str
    root: Path
    parameters: dict[str, Any]
    resources: list[Resource] = field(default_factory=list)
    layers: list[Layer] = field(default_factory=list)
    functions: list[Function] = field(default_factory=list)
    state_machines: list[StateMachine] = field(default_factory=list)
    rules: list[EventRule] = field(default_factory=list)
    http_apis: dict[str, str] = field(default_factory=dict)  # logical id -> api id
    outputs: dict[str, Any] = field(default_factory=dict)
    not_emulated: list[str] = field(default_factory=list)

    def function(self, name: str) -> Function:
        for fn in self.functions:
            if name in (fn.name, fn.arn, fn.logical_id):
                return fn
        raise KeyError(name)

    def of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.resources if r.type == resource_type]
