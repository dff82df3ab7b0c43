"""Reads template.yaml into a resolved stack: what CloudFormation + the SAM transform would create.

Everything a local resource needs (function settings, environment, layers, the state
machine definition, trigger patterns, routes) is read from the template here and nowhere
else; what it becomes is ``localcloud.cloudformation.stack``, its names
``localcloud.cloudformation.physical_names``. Anything the local cloud cannot honour raises
``TemplateError`` naming it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from localcloud.cloudformation import yaml_loader
from localcloud.cloudformation.intrinsics import (
    NO_VALUE,
    Pseudo,
    Resolver,
    TemplateError,
    resolve_parameters,
)
from localcloud.cloudformation.physical_names import PhysicalNames
from localcloud.cloudformation.rules import check_rules
from localcloud.cloudformation.stack import (
    IMPLICIT_HTTP_API,
    SAM_FUNCTION,
    SAM_HTTP_API,
    SAM_LAYER,
    SAM_STATE_MACHINE,
    EventRule,
    Function,
    Layer,
    Resource,
    Route,
    Stack,
    StateMachine,
)
from localcloud.services.iam.policies import sam_role_properties

# Resource policies: set on their topics and queues, and evaluated where a service acts on
# them (CloudWatch publishing an alarm, EventBridge dead-lettering an event). They have no ARN.
RESOURCE_POLICIES = ("AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy")
# Types that are deployed into the local cloud.
DEPLOYED = {
    "AWS::S3::Bucket",
    "AWS::DynamoDB::Table",
    "AWS::IAM::Role",
    "AWS::Logs::LogGroup",
    "AWS::SNS::Topic",
    "AWS::SQS::Queue",
    "AWS::Events::Rule",
    "AWS::SageMaker::ModelPackageGroup",
    "AWS::CloudWatch::Alarm",
    *RESOURCE_POLICIES,
    SAM_FUNCTION,
    SAM_LAYER,
    SAM_STATE_MACHINE,
    SAM_HTTP_API,
}
# Types that only grant or observe on AWS: accepted, with no local effect (IAM is enforced
# from the roles' own Policies only: a separate policy resource grants nothing locally).
NO_LOCAL_EFFECT = {
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::Lambda::Permission",
    "AWS::S3::BucketPolicy",
    "AWS::CloudWatch::Dashboard",
}


def load_template(path: Path) -> dict[str, Any]:
    try:
        return yaml_loader.load(path)
    except yaml_loader.TemplateSyntaxError as exc:
        raise TemplateError(f"{path}: cannot be parsed: {exc}") from None


def load_overrides(path: Path) -> dict[str, Any]:
    """The local parameter overrides file (YAML mapping of parameter name -> value)."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: expected a mapping of parameter names to values")
    return data


def stack_name_from_samconfig(root: Path) -> str | None:
    import tomllib

    config = root / "samconfig.toml"
    if not config.exists():
        return None
    default = tomllib.loads(config.read_text()).get("default", {})
    for command in ("deploy", "global"):  # sam reads deploy's, then the global one
        name = default.get(command, {}).get("parameters", {}).get("stack_name")
        if name:
            return str(name)
    return None


def _merge_globals(global_props: Mapping[str, Any], local: Mapping[str, Any]) -> dict[str, Any]:
    """SAM Globals: maps merge (local wins), lists concatenate (globals first), scalars override."""
    merged = dict(global_props)
    for key, value in local.items():
        base = merged.get(key)
        if isinstance(base, dict) and isinstance(value, dict):
            merged[key] = _merge_globals(base, value)
        elif isinstance(base, list) and isinstance(value, list):
            merged[key] = base + value
        else:
            merged[key] = value
    return merged


def resolve_stack(
    template_path: Path,
    *,
    region: str,
    stack_name: str,
    overrides: Mapping[str, Any] | None = None,
) -> Stack:
    """The stack CloudFormation would create from ``template_path`` with ``overrides``."""
    template = load_template(template_path)
    root = template_path.resolve().parent
    pseudo = Pseudo(region=region, stack_name=stack_name)
    parameters = resolve_parameters(template.get("Parameters", {}), overrides or {})
    check_rules(template.get("Rules", {}), parameters, pseudo.values())
    names = PhysicalNames(template, pseudo)
    resolver = Resolver(template, parameters, pseudo, names)
    names.resolver = resolver
    builder = _Builder(template, root, resolver, names, pseudo)
    stack = Stack(
        name=stack_name,
        region=region,
        account_id=pseudo.account_id,
        root=root,
        parameters=parameters,
    )
    builder.build(stack)
    return stack


class _Builder:
    def __init__(
        self,
        template: Mapping[str, Any],
        root: Path,
        resolver: Resolver,
        names: PhysicalNames,
        pseudo: Pseudo,
    ) -> None:
        self.template = template
        self.root = root
        self.r = resolver
        self.names = names
        self.pseudo = pseudo
        self.globals = template.get("Globals", {})

    def build(self, stack: Stack) -> None:
        transform = self.template.get("Transform")
        transforms = transform if isinstance(transform, list) else [transform]
        extra = [t for t in transforms if t and t != "AWS::Serverless-2016-10-31"]
        if extra:
            raise TemplateError(f"transform(s) {extra} are not supported by the local cloud")
        resources: dict[str, Any] = self.template.get("Resources", {})
        active = {
            lid: res
            for lid, res in resources.items()
            if "Condition" not in res or self.r.condition(res["Condition"])
        }
        for lid, res in active.items():
            kind = res.get("Type", "")
            if kind not in DEPLOYED and kind not in NO_LOCAL_EFFECT:
                raise TemplateError(f"resource {lid}: type {kind} is not supported locally")
        # Layers first: functions refer to them.
        for lid, res in active.items():
            if res["Type"] == SAM_LAYER:
                stack.layers.append(self._layer(lid, res))
        for lid, res in active.items():
            kind = res["Type"]
            props = self._properties(kind, res)
            if kind == SAM_LAYER:
                continue
            if kind == SAM_FUNCTION:
                self._function(stack, lid, props)
            elif kind == SAM_STATE_MACHINE:
                self._state_machine(stack, lid, props)
            elif kind == SAM_HTTP_API:
                stack.http_apis[lid] = self.names.name(lid)
                self._note_http_api(stack, lid, props)
            elif kind == "AWS::Events::Rule":
                self._plain_rule(stack, lid, props)
            elif kind in NO_LOCAL_EFFECT:
                stack.not_emulated.append(f"{lid} ({kind}): no local effect")
            else:
                resolved = self.r.value(props)
                arn = "" if kind in RESOURCE_POLICIES else self.names.arn(lid)
                stack.resources.append(Resource(lid, kind, self.names.name(lid), arn, resolved))
        stack.outputs = {
            key: self.r.value(out.get("Value"))
            for key, out in self.template.get("Outputs", {}).items()
            if "Condition" not in out or self.r.condition(out["Condition"])
        }

    def _properties(self, kind: str, res: Mapping[str, Any]) -> dict[str, Any]:
        props = res.get("Properties", {})
        global_key = {
            SAM_FUNCTION: "Function",
            SAM_STATE_MACHINE: "StateMachine",
            SAM_HTTP_API: "HttpApi",
            SAM_LAYER: "LayerVersion",
        }.get(kind)
        if global_key and global_key in self.globals:
            props = _merge_globals(self.globals[global_key], props)
        return props

    def _path(self, lid: str, prop: str, value: Any) -> Path:
        if not isinstance(value, str) or value.startswith("s3://"):
            raise TemplateError(f"{lid}.{prop}: only a local path is supported, got {value!r}")
        path = (self.root / value).resolve()
        if not path.exists():
            raise TemplateError(f"{lid}.{prop}: {path} does not exist")
        return path

    def _layer(self, lid: str, res: Mapping[str, Any]) -> Layer:
        props = self._properties(SAM_LAYER, res)
        content = self._path(lid, "ContentUri", self.r.value(props.get("ContentUri")))
        build = str(res.get("Metadata", {}).get("BuildMethod", ""))
        return Layer(
            logical_id=lid,
            name=self.names.name(lid),
            arn=self.names.arn(lid),
            content_dir=content,
            python_layer=build.startswith("python"),
        )

    def _function(self, stack: Stack, lid: str, raw: Mapping[str, Any]) -> None:
        if raw.get("PackageType", "Zip") != "Zip" or "InlineCode" in raw:
            raise TemplateError(f"function {lid}: only CodeUri (Zip) functions run locally")
        props = {k: v for k, v in raw.items() if k != "Events"}
        props = self.r.value(props)
        layers: list[Layer] = []
        external: list[str] = []
        by_arn = {layer.arn: layer for layer in stack.layers}
        for arn in props.get("Layers", []):
            if arn in by_arn:
                layers.append(by_arn[arn])
            else:
                external.append(arn)
        name = self.names.name(lid)
        variables = {
            str(k): _env_text(v)
            for k, v in props.get("Environment", {}).get("Variables", {}).items()
        }
        environment = {k: map_opt_path(v, layers, f"{lid} {k}") for k, v in variables.items()}
        role = props.get("Role") or self.names.arn(f"{lid}Role")
        logging = props.get("LoggingConfig", {})
        reserved = props.get("ReservedConcurrentExecutions")
        provisioned = props.get("ProvisionedConcurrencyConfig", {}).get(
            "ProvisionedConcurrentExecutions"
        )
        fn = Function(
            logical_id=lid,
            name=name,
            arn=self.names.arn(lid),
            role_arn=role,
            code_dir=self._path(lid, "CodeUri", props.get("CodeUri", ".")),
            handler=str(props.get("Handler", "")),
            runtime=str(props.get("Runtime", "python3.13")),
            timeout=int(props.get("Timeout", 3)),
            memory_mb=int(props.get("MemorySize", 128)),
            environment=environment,
            layers=tuple(layers),
            external_layers=tuple(external),
            reserved_concurrency=None if reserved is None else int(reserved),
            log_group=str(logging.get("LogGroup") or f"/aws/lambda/{name}"),
            routes=tuple(self._routes(lid, raw.get("Events", {}))),
            alias=props.get("AutoPublishAlias"),
            provisioned_concurrency=None if provisioned is None else int(provisioned),
        )
        if not fn.runtime.startswith("python"):
            raise TemplateError(f"function {lid}: runtime {fn.runtime} does not run locally")
        if "." not in fn.handler:
            raise TemplateError(f"function {lid}: Handler {fn.handler!r} is not module.function")
        stack.functions.append(fn)
        ignored = sorted(set(props) & _FUNCTION_NOT_EMULATED)
        if ignored:
            stack.not_emulated.append(f"{lid}: {', '.join(ignored)} not emulated")
        for arn in external:
            stack.not_emulated.append(
                f"{lid}: layer {arn} is not local; its packages come from the local environment"
            )
        if "Role" not in props:
            role_props = sam_role_properties(
                f"{lid}Role",
                props.get("Policies"),
                self.r.value,
                function=True,
                tracing=props.get("Tracing") == "Active",
            )
            self._implicit_role(stack, f"{lid}Role", "lambda.amazonaws.com", role_props)

    def _routes(self, lid: str, events: Mapping[str, Any]) -> list[Route]:
        routes = []
        for event_id, event in events.items():
            if event.get("Type") != "HttpApi":
                raise TemplateError(
                    f"function {lid}: event {event_id} of type {event.get('Type')} "
                    "is not supported locally (HttpApi only)"
                )
            props = self.r.value(event.get("Properties", {}))
            api_id = props.get("ApiId") or self.names.name(IMPLICIT_HTTP_API)
            method = str(props.get("Method", "ANY")).upper()
            path = str(props.get("Path", "$default"))
            raw_api = event.get("Properties", {}).get("ApiId")
            api_lid = raw_api.get("Ref") if isinstance(raw_api, dict) else None
            routes.append(
                Route(
                    api_id=api_id,
                    method="ANY" if method in ("X-AMAZON-APIGATEWAY-ANY-METHOD", "*") else method,
                    path=path,
                    payload_format=str(props.get("PayloadFormatVersion", "2.0")),
                    timeout_ms=int(props.get("TimeoutInMillis", 30000)),
                    authorization=self._authorization(
                        f"{lid}.{event_id}", api_lid, method, path, props.get("Auth", {})
                    ),
                )
            )
            if props.get("PayloadFormatVersion", "2.0") != "2.0":
                raise TemplateError(f"function {lid}: only HTTP API payload format 2.0 is local")
        return routes

    def _authorization(
        self, where: str, api_lid: str | None, method: str, path: str, event_auth: Any
    ) -> str:
        """AWS_IAM if the route requires SigV4 (event Auth, API Auth or its OpenAPI body)."""
        chosen = event_auth.get("Authorizer") if isinstance(event_auth, dict) else None
        api = self.template.get("Resources", {}).get(api_lid or "", {})
        props = self._properties(SAM_HTTP_API, api) if api else self.globals.get("HttpApi", {})
        auth = self.r.value(props.get("Auth", {}))
        chosen = chosen or auth.get("DefaultAuthorizer")
        if chosen is None:
            body = self.r.value(props.get("DefinitionBody", {}))
            operation = body.get("paths", {}).get(path, {}).get(method.lower(), {})
            security = operation.get("security", body.get("security", []))
            schemes = body.get("components", {}).get("securitySchemes", {})
            names = [name for requirement in security for name in requirement]
            kinds = [schemes.get(n, {}).get("x-amazon-apigateway-authtype") for n in names]
            chosen = "AWS_IAM" if "awsSigv4" in kinds else (names[0] if names else "NONE")
        if chosen not in ("NONE", "AWS_IAM"):
            raise TemplateError(
                f"{where}: authorizer {chosen!r} is not emulated locally (NONE or AWS_IAM only)"
            )
        return str(chosen)

    def _note_http_api(self, stack: Stack, lid: str, props: Mapping[str, Any]) -> None:
        ignored = sorted(set(props) & _HTTP_API_NOT_EMULATED)
        if ignored:
            stack.not_emulated.append(f"{lid}: {', '.join(ignored)} not emulated")

    def _implicit_role(
        self, stack: Stack, lid: str, service: str, policies: Mapping[str, Any]
    ) -> None:
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
        stack.resources.append(
            Resource(
                lid,
                "AWS::IAM::Role",
                self.names.name(lid),
                self.names.arn(lid),
                {"AssumeRolePolicyDocument": policy, **policies},
            )
        )

    def _state_machine(self, stack: Stack, lid: str, raw: Mapping[str, Any]) -> None:
        props = self.r.value({k: v for k, v in raw.items() if k != "Events"})
        substitutions = {k: str(v) for k, v in props.get("DefinitionSubstitutions", {}).items()}
        if "DefinitionUri" in props:
            path = self._path(lid, "DefinitionUri", props["DefinitionUri"])
            # CloudFormation substitutes the raw text: placeholders may stand for numbers.
            text = substitute_definition(path.read_text(), substitutions, lid)
            try:
                definition = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            except (ValueError, yaml.YAMLError) as exc:
                raise TemplateError(f"state machine {lid}: {path.name} is invalid: {exc}") from exc
        elif "Definition" in props:
            text = substitute_definition(json.dumps(props["Definition"]), substitutions, lid)
            definition = json.loads(text)
        else:
            raise TemplateError(f"state machine {lid}: needs Definition or DefinitionUri")
        body = json.dumps(definition, indent=2)
        sm_type = str(props.get("Type", "STANDARD"))
        if sm_type != "STANDARD":
            raise TemplateError(f"state machine {lid}: only STANDARD workflows run locally")
        role = props.get("Role") or self.names.arn(f"{lid}Role")
        machine = StateMachine(lid, self.names.name(lid), self.names.arn(lid), role, body, sm_type)
        stack.state_machines.append(machine)
        if "Role" not in props:
            role_props = sam_role_properties(
                f"{lid}Role", props.get("Policies"), self.r.value, function=False, tracing=False
            )
            self._implicit_role(stack, f"{lid}Role", "states.amazonaws.com", role_props)
        for key in ("Logging", "Tracing"):
            if key in props:
                stack.not_emulated.append(f"{lid}: {key} is not emulated locally")
        for event_id, event in raw.get("Events", {}).items():
            if event.get("Type") not in ("EventBridgeRule", "CloudWatchEvent"):
                raise TemplateError(
                    f"state machine {lid}: event {event_id} of type {event.get('Type')} "
                    "is not supported locally (EventBridgeRule only)"
                )
            self._sam_rule(stack, lid, machine, event_id, self.r.value(event["Properties"]))

    def _sam_rule(
        self,
        stack: Stack,
        lid: str,
        machine: StateMachine,
        event_id: str,
        props: Mapping[str, Any],
    ) -> None:
        for unsupported in ("Input", "InputPath", "InputTransformer"):
            if unsupported in props:
                raise TemplateError(f"{lid}.{event_id}: {unsupported} is not supported locally")
        dead_letter = self.r.value(props.get("DeadLetterConfig") or {}).get("Arn")
        ignored = sorted(set(props) & {"RetryPolicy", "DeadLetterConfig"})
        if dead_letter:  # SAM's Type: SQS (a queue it creates) is not emulated
            ignored.remove("DeadLetterConfig")
        if ignored:
            stack.not_emulated.append(f"{lid}.{event_id}: {', '.join(ignored)} not emulated")
        rule_lid = f"{lid}{event_id}"
        name = self.names.name(rule_lid)
        role_lid = f"{rule_lid}Role"
        stack.rules.append(
            EventRule(
                name=name,
                arn=self.names._arn("events", f"rule/{name}"),
                bus=str(props.get("EventBusName", "default")),
                pattern=props["Pattern"],
                enabled=str(props.get("State", "ENABLED")) == "ENABLED",
                target_arn=machine.arn,
                target_id=str(props.get("Target", {}).get("Id", f"{rule_lid}StepFunctionsTarget")),
                role_arn=self.names._arn(
                    "iam", f"role/{self.names._generated(role_lid, 64)}", region=False
                ),
                dead_letter_arn=str(dead_letter) if dead_letter else None,
            )
        )

    def _plain_rule(self, stack: Stack, lid: str, props: Mapping[str, Any]) -> None:
        props = self.r.value(props)
        if "EventPattern" not in props:
            raise TemplateError(f"rule {lid}: only EventPattern rules are supported locally")
        for target in props.get("Targets", []):
            if ":states:" not in target["Arn"]:
                raise TemplateError(f"rule {lid}: only Step Functions targets run locally")
            stack.rules.append(
                EventRule(
                    name=self.names.name(lid),
                    arn=self.names.arn(lid),
                    bus=str(props.get("EventBusName", "default")),
                    pattern=props["EventPattern"],
                    enabled=str(props.get("State", "ENABLED")) == "ENABLED",
                    target_arn=target["Arn"],
                    target_id=target["Id"],
                    role_arn=str(target.get("RoleArn", "")),
                )
            )


_FUNCTION_NOT_EMULATED = {
    "ProvisionedConcurrencyConfig",
    "Tracing",
    "VpcConfig",
    "DeadLetterQueue",
    "EventInvokeConfig",
    "FunctionUrlConfig",
    "SnapStart",
    "EphemeralStorage",
}
_HTTP_API_NOT_EMULATED = {
    "CorsConfiguration",
    "Domain",
    "AccessLogSettings",
    "DefaultRouteSettings",
    "RouteSettings",
}


def _env_text(value: Any) -> str:
    if value is NO_VALUE:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        raise TemplateError(f"environment values must be strings, got {value!r}")
    return str(value)


def map_opt_path(value: str, layers: tuple[Layer, ...] | list[Layer], where: str) -> str:
    """Point an /opt path (where Lambda mounts layers) at the layer's local directory."""
    if value != "/opt" and not value.startswith("/opt/"):
        return value
    rel = value[len("/opt/") :] if value != "/opt" else ""
    candidates: list[Path] = []
    for layer in layers:
        if layer.python_layer:
            if rel == "python" or rel.startswith("python/"):
                candidates.append(layer.content_dir / rel[len("python/") :])
        else:
            candidates.append(layer.content_dir / rel)
    existing = [c for c in candidates if c.exists()]
    chosen = existing or candidates
    if len(chosen) != 1:
        detail = "no layer of this function provides it" if not chosen else "several layers do"
        raise TemplateError(f"{where}: cannot map {value} to a local layer directory: {detail}")
    return str(chosen[0])


_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


def substitute_definition(body: str, substitutions: Mapping[str, str], where: str) -> str:
    """Fill ``${Name}`` placeholders like CloudFormation's DefinitionSubstitutions."""
    missing = sorted({m for m in _PLACEHOLDER.findall(body) if m not in substitutions})
    if missing:
        raise TemplateError(f"state machine {where}: no DefinitionSubstitutions for {missing}")
    return _PLACEHOLDER.sub(lambda m: substitutions[m.group(1)], body)
