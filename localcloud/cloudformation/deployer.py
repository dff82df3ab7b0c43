"""Creates a resolved stack in the local cloud through the AWS APIs, as CloudFormation would.

Deploying through boto3 (not moto's backends) keeps the resources exactly what the
public API makes of them: whatever ``aws s3api``, ``aws stepfunctions`` or a user's script
sees afterwards is what the pipeline sees. The server process deploys its own template, so
its requests go to the server's WSGI app in process (``in_process``): the same app, the
same requests and responses, without the loopback socket (170 calls: 0.4 s less here).
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError
from werkzeug.test import EnvironBuilder, run_wsgi_app

from localcloud.cloudformation.intrinsics import TemplateError
from localcloud.cloudformation.stack import EventRule, Function, Layer, Resource, Stack
from localcloud.runtime.account_profiles import AccountProfile, QuotaExceeded
from localcloud.services.iam.policies import unknown_managed

Clients = Callable[[str], BaseClient]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def clients_for(endpoint_url: str, region: str, app: WsgiApp | None = None) -> Clients:
    """Clients of the local cloud at ``endpoint_url``; with ``app`` (that endpoint's WSGI
    app), their requests are handed to it in this process instead of sent over HTTP."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    )
    if app is not None:
        session.events.register("before-send", in_process(app))
    config = Config(retries={"mode": "standard", "max_attempts": 2}, read_timeout=120)
    cache: dict[str, BaseClient] = {}

    def client(service: str) -> BaseClient:
        if service not in cache:
            cache[service] = session.client(service, endpoint_url=endpoint_url, config=config)
        return cache[service]

    return client


class _Body(io.BytesIO):
    def stream(self, **_: Any) -> Iterator[bytes]:  # what botocore reads a response with
        yield self.getvalue()


def in_process(app: WsgiApp) -> Callable[..., AWSResponse]:
    """A botocore ``before-send`` handler that answers each request with ``app``."""

    def send(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        url = urlsplit(request.url)
        body = request.body.read() if hasattr(request.body, "read") else request.body
        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        environ = EnvironBuilder(
            method=request.method,
            base_url=f"{url.scheme}://{url.netloc}",
            path=url.path,
            query_string=url.query,
            headers=headers,
            data=body or b"",
        ).get_environ()
        chunks, status, reply_headers = run_wsgi_app(app, environ)
        try:
            content = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        return AWSResponse(
            request.url, int(status.split(" ", 1)[0]), dict(reply_headers), _Body(content)
        )

    return send


def _zip_dir(path: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(path.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                archive.write(file, file.relative_to(path))
    return buffer.getvalue()


def deploy(stack: Stack, client: Clients, profile: AccountProfile | None = None) -> list[str]:
    """Create every resource of ``stack``; returns notes on what is not emulated.

    ``profile``: the account whose Lambda concurrency provisioned concurrency comes from.
    """
    notes = list(stack.not_emulated)
    deployers: Mapping[str, Callable[[Resource, Clients], list[str]]] = {
        "AWS::IAM::Role": _role,
        "AWS::S3::Bucket": _bucket,
        "AWS::DynamoDB::Table": _table,
        "AWS::Logs::LogGroup": _log_group,
        "AWS::SNS::Topic": _topic,
        "AWS::SQS::Queue": _queue,
        "AWS::SageMaker::ModelPackageGroup": _model_package_group,
        "AWS::CloudWatch::Alarm": _alarm,
        "AWS::SNS::TopicPolicy": _topic_policy,
        "AWS::SQS::QueuePolicy": _queue_policy,
    }
    try:
        # roles first (others name them), resource policies last (on topics and queues)
        order = {"AWS::IAM::Role": 0, "AWS::SNS::TopicPolicy": 2, "AWS::SQS::QueuePolicy": 2}
        for resource in sorted(stack.resources, key=lambda r: order.get(r.type, 1)):
            where = resource.logical_id
            notes += deployers[resource.type](resource, client)
        layer_arns = {}
        for layer in stack.layers:
            where = layer.logical_id
            layer_arns[layer.arn] = _layer(layer, client)
        for fn in stack.functions:
            where = fn.logical_id
            _function(fn, layer_arns, client)
        if profile is not None:
            _provisioned_concurrency(stack, profile)
        for machine in stack.state_machines:
            where = machine.logical_id
            client("stepfunctions").create_state_machine(
                name=machine.name,
                definition=machine.definition,
                roleArn=machine.role_arn,
                type=machine.type,
            )
        for rule in stack.rules:
            where = rule.name
            _rule(rule, client)
    except ClientError as exc:
        raise TemplateError(f"deploying {where}: {exc.response['Error']['Message']}") from exc
    return notes


def _provisioned_concurrency(stack: Stack, profile: AccountProfile) -> None:
    """The aliases' provisioned concurrency (SAM's ``<Function>Alias<alias>``): without a
    reservation it comes from the account's unreserved pool, which keeps its floor."""
    taken = sum(fn.reserved_concurrency or 0 for fn in stack.functions)
    for fn in stack.functions:
        provisioned = fn.provisioned_concurrency or 0
        if not provisioned or fn.reserved_concurrency is not None:
            continue
        try:
            profile.check_provisioned_concurrency(taken, provisioned)
        except QuotaExceeded as exc:
            raise TemplateError(
                f"{fn.logical_id}Alias{fn.alias or ''} CREATE_FAILED: Resource handler returned "
                f'message: "{exc} (Service: Lambda, Status Code: 400)" (ProvisionedConcurrency'
                f"Config of {fn.name}; the account's Lambda quota 'Concurrent executions' is "
                f"{profile.lambda_concurrent_executions}: request an increase in Service Quotas)"
            ) from None
        taken += provisioned


def _create_failed(fn: Function, exc: ClientError, what: str) -> TemplateError:
    """CloudFormation's CREATE_FAILED for the function, naming the quota behind a refusal."""
    message = exc.response["Error"]["Message"]
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
    hint = ""
    if "UnreservedConcurrentExecution" in message:
        hint = (
            f" ({what} of {fn.name}; the account's Lambda quota 'Concurrent executions' is "
            "too low: request an increase in Service Quotas, or reserve nothing)"
        )
    return TemplateError(
        f"{fn.logical_id} CREATE_FAILED: Resource handler returned message: "
        f'"{message} (Service: Lambda, Status Code: {status})"{hint}'
    )


def _rule(rule: EventRule, client: Clients) -> None:
    events = client("events")
    events.put_rule(
        Name=rule.name,
        EventPattern=json.dumps(rule.pattern),
        State="ENABLED" if rule.enabled else "DISABLED",
        EventBusName=rule.bus,
    )
    events.put_targets(
        Rule=rule.name,
        EventBusName=rule.bus,
        Targets=[
            {
                "Id": rule.target_id,
                "Arn": rule.target_arn,
                "RoleArn": rule.role_arn,
                **(
                    {"DeadLetterConfig": {"Arn": rule.dead_letter_arn}}
                    if rule.dead_letter_arn
                    else {}
                ),
            }
        ],
    )


def _ignored(resource: Resource, handled: set[str]) -> list[str]:
    extra = sorted(set(resource.properties) - handled)
    if not extra:
        return []
    return [f"{resource.logical_id}: {', '.join(extra)} not emulated"]


def _role(resource: Resource, client: Clients) -> list[str]:
    """The role with its inline policies (``aws iam get-role-policy`` shows what is enforced)
    and its managed policies attached; a managed policy the local cloud does not know grants
    nothing locally, and is noted."""
    props = resource.properties
    iam = client("iam")
    iam.create_role(
        RoleName=resource.name,
        Path=props.get("Path", "/"),
        AssumeRolePolicyDocument=json.dumps(props.get("AssumeRolePolicyDocument", {})),
    )
    for policy in props.get("Policies") or []:
        iam.put_role_policy(
            RoleName=resource.name,
            PolicyName=str(policy["PolicyName"]),
            PolicyDocument=json.dumps(policy["PolicyDocument"]),
        )
    for arn in props.get("ManagedPolicyArns") or []:
        # one missing from moto's copy of the AWS managed policies is noted below anyway
        with contextlib.suppress(ClientError):
            iam.attach_role_policy(RoleName=resource.name, PolicyArn=str(arn))
    unknown = unknown_managed(props)
    return [f"{resource.logical_id}: managed policy {a} not evaluated locally" for a in unknown]


def _bucket(resource: Resource, client: Clients) -> list[str]:
    s3 = client("s3")
    region = s3.meta.region_name
    kwargs: dict[str, Any] = {"Bucket": resource.name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)
    props = resource.properties
    notification = props.get("NotificationConfiguration", {})
    if notification.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
        s3.put_bucket_notification_configuration(
            Bucket=resource.name,
            NotificationConfiguration={"EventBridgeConfiguration": {}},
        )
    versioning = props.get("VersioningConfiguration", {}).get("Status")
    if versioning:
        s3.put_bucket_versioning(
            Bucket=resource.name, VersioningConfiguration={"Status": versioning}
        )
    handled = {"BucketName", "NotificationConfiguration", "VersioningConfiguration", "Tags"}
    return _ignored(resource, handled)


def _table(resource: Resource, client: Clients) -> list[str]:
    props = resource.properties
    passed = (
        "AttributeDefinitions",
        "KeySchema",
        "BillingMode",
        "ProvisionedThroughput",
        "GlobalSecondaryIndexes",
        "LocalSecondaryIndexes",
    )
    kwargs = {k: props[k] for k in passed if k in props}
    ddb = client("dynamodb")
    ddb.create_table(TableName=resource.name, **kwargs)
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        ddb.update_time_to_live(
            TableName=resource.name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )
    return _ignored(resource, {*passed, "TableName", "TimeToLiveSpecification", "Tags"})


def _log_group(resource: Resource, client: Clients) -> list[str]:
    logs = client("logs")
    logs.create_log_group(logGroupName=resource.name)
    retention = resource.properties.get("RetentionInDays")
    if retention:
        logs.put_retention_policy(logGroupName=resource.name, retentionInDays=int(retention))
    return _ignored(resource, {"LogGroupName", "RetentionInDays", "Tags"})


def _topic(resource: Resource, client: Clients) -> list[str]:
    client("sns").create_topic(Name=resource.name)
    return _ignored(resource, {"TopicName", "Tags"})


def _queue(resource: Resource, client: Clients) -> list[str]:
    client("sqs").create_queue(QueueName=resource.name)
    return _ignored(resource, {"QueueName", "Tags"})


def _topic_policy(resource: Resource, client: Clients) -> list[str]:
    """The topics' access policy (replacing SNS's default one), as CloudFormation sets it."""
    policy = json.dumps(resource.properties["PolicyDocument"])
    for arn in resource.properties["Topics"]:
        client("sns").set_topic_attributes(
            TopicArn=str(arn), AttributeName="Policy", AttributeValue=policy
        )
    return []


def _queue_policy(resource: Resource, client: Clients) -> list[str]:
    policy = json.dumps(resource.properties["PolicyDocument"])
    for url in resource.properties["Queues"]:
        client("sqs").set_queue_attributes(QueueUrl=str(url), Attributes={"Policy": policy})
    return []


def _model_package_group(resource: Resource, client: Clients) -> list[str]:
    description = resource.properties.get("ModelPackageGroupDescription")
    client("sagemaker").create_model_package_group(
        ModelPackageGroupName=resource.name,
        **({"ModelPackageGroupDescription": str(description)} if description else {}),
    )
    return _ignored(resource, {"ModelPackageGroupName", "ModelPackageGroupDescription", "Tags"})


_ALARM_PROPERTIES = (
    "AlarmDescription", "Namespace", "MetricName", "Dimensions", "Statistic", "Period",
    "EvaluationPeriods", "DatapointsToAlarm", "Threshold", "ComparisonOperator",
    "TreatMissingData", "AlarmActions", "OKActions", "InsufficientDataActions", "Unit",
    "ActionsEnabled", "ExtendedStatistic",
)  # fmt: skip
_ALARM_NUMBERS = {"Period": int, "EvaluationPeriods": int, "DatapointsToAlarm": int,
                  "Threshold": float}  # fmt: skip


def _alarm(resource: Resource, client: Clients) -> list[str]:
    """The template's metric alarms, stored in the local CloudWatch (a blue/green update's
    AutoRollbackConfiguration names them, and the local evaluator reads them)."""
    props = resource.properties
    request: dict[str, Any] = {"AlarmName": resource.name}
    for key in _ALARM_PROPERTIES:
        if key in props:
            value = props[key]
            request[key] = _ALARM_NUMBERS[key](value) if key in _ALARM_NUMBERS else value
    if isinstance(request.get("ActionsEnabled"), str):
        request["ActionsEnabled"] = request["ActionsEnabled"].lower() == "true"
    client("cloudwatch").put_metric_alarm(**request)
    return _ignored(resource, {"AlarmName", "Tags", *_ALARM_PROPERTIES})


def _layer(layer: Layer, client: Clients) -> str:
    # Workers read the layer from its directory; the API only needs a placeholder archive.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("LOCAL.txt", f"served from {layer.content_dir}\n")
    reply = client("lambda").publish_layer_version(
        LayerName=layer.name, Content={"ZipFile": buffer.getvalue()}
    )
    return str(reply["LayerVersionArn"])


def _function(fn: Function, layer_arns: Mapping[str, str], client: Clients) -> None:
    lam = client("lambda")
    lam.create_function(
        FunctionName=fn.name,
        Runtime=fn.runtime,
        Role=fn.role_arn,
        Handler=fn.handler,
        Code={"ZipFile": _zip_dir(fn.code_dir)},
        Timeout=fn.timeout,
        MemorySize=fn.memory_mb,
        Environment={"Variables": dict(fn.environment)},
        Layers=[layer_arns[layer.arn] for layer in fn.layers],
    )
    if fn.alias:
        version = lam.publish_version(FunctionName=fn.name)["Version"]
        lam.create_alias(FunctionName=fn.name, Name=fn.alias, FunctionVersion=version)
    if fn.reserved_concurrency is not None:
        try:
            lam.put_function_concurrency(
                FunctionName=fn.name, ReservedConcurrentExecutions=fn.reserved_concurrency
            )
        except ClientError as exc:
            raise _create_failed(fn, exc, "ReservedConcurrentExecutions") from None
    provisioned, reserved = fn.provisioned_concurrency or 0, fn.reserved_concurrency
    if reserved is not None and provisioned > reserved:
        raise TemplateError(
            f"{fn.logical_id} CREATE_FAILED: Resource handler returned message: "
            '"Requested Provisioned Concurrency should not be greater than the '
            f'reservedConcurrentExecution for function" (ProvisionedConcurrentExecutions '
            f"{provisioned} > ReservedConcurrentExecutions {reserved})"
        )
    logs = client("logs")
    if not logs.describe_log_groups(logGroupNamePrefix=fn.log_group)["logGroups"]:
        logs.create_log_group(logGroupName=fn.log_group)
