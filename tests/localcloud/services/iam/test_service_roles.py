"""What services do on the caller's behalf is checked against the role AWS uses for it: a
copy of template.yaml lacking one of those permissions makes the local cloud refuse or fail
the work as AWS would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.events.models import EventPattern

import localcloud.services.sagemaker as local_sagemaker
from localcloud.cloudformation.deployer import _queue_policy, _topic_policy
from localcloud.cloudformation.stack import Stack
from localcloud.runtime.settings import DEFAULT_TEMPLATE
from localcloud.services import iam
from localcloud.services.cloudwatch import alarms
from localcloud.services.events import s3_events
from localcloud.services.sagemaker.metric_definitions import HostMetrics
from tests.localcloud.iam_support import (
    REGION,
    SAGEMAKER_ROLE,
    EnforcedCloud,
    bucket,
    enforced_cloud,
    pipeline_stack,
    template_replacing,
    template_without,
)
from tests.localcloud.sagemaker_support import (
    FAKE_SERVE,
    VARIANT,
    assert_no_new_children,
    children,
    tgz,
    wait_endpoint,
    wait_for,
)


def sagemaker_role(stack: Stack) -> str:
    return next(r.arn for r in stack.resources if r.logical_id == SAGEMAKER_ROLE)


def rollback_alarms(stack: Stack) -> list[str]:
    names = stack.function("PrepareRunFunction").environment["ROLLBACK_ALARM_NAMES"]
    return names.split(",")


class Hosting:
    """The local SageMaker and CloudWatch in this process, IAM enforced for ``stack``."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        self.cloudwatch = boto3.client("cloudwatch", region_name=REGION)
        self.s3.create_bucket(Bucket=bucket(stack))
        for name in rollback_alarms(stack):
            self.cloudwatch.put_metric_alarm(
                AlarmName=name,
                Namespace="AWS/SageMaker",
                MetricName="Invocation5XXErrors",
                Statistic="Sum",
                Period=60,
                EvaluationPeriods=1,
                Threshold=1,
                ComparisonOperator="GreaterThanOrEqualToThreshold",
            )

    def config(self, version: str, instances: int = 2) -> str:
        """A model (as the stack's SageMaker execution role) and its endpoint config."""
        key = f"models/{version}/output/model.tar.gz"
        body = tgz({"model.json": f'{{"version": "{version}"}}'})
        self.s3.put_object(Bucket=bucket(self.stack), Key=key, Body=body)
        self.sagemaker.create_model(
            ModelName=f"model-{version}",
            ExecutionRoleArn=sagemaker_role(self.stack),
            PrimaryContainer={
                "Image": "inference:1",
                "ModelDataUrl": f"s3://{bucket(self.stack)}/{key}",
            },
        )
        self.sagemaker.create_endpoint_config(
            EndpointConfigName=f"config-{version}",
            ProductionVariants=[
                {
                    "VariantName": VARIANT,
                    "ModelName": f"model-{version}",
                    "InitialInstanceCount": instances,
                    "InstanceType": "ml.m5.large",
                }
            ],
        )
        return f"config-{version}"


@pytest.fixture
def hosting(tmp_path: Path) -> Iterator[Hosting]:
    """The stack of a template copy whose SageMakerExecutionRole may not read the alarms."""
    stack = pipeline_stack(
        template_without(tmp_path / "template", SAGEMAKER_ROLE, "RollbackAlarms")
    )
    enforcer = iam.Enforcer(stack)
    enforcer.warm_up()  # the evaluator's process lives as long as the test process
    before = children()
    serve = tmp_path / "fake_serve.py"
    serve.write_text(FAKE_SERVE)
    iam.install(enforcer)
    try:
        with mock_aws():
            local_sagemaker.install(tmp_path / "state", serve_command=(str(serve),))
            yield Hosting(stack)
    finally:
        local_sagemaker.uninstall()
        iam.uninstall()
        assert_no_new_children(before)


def test_finding_2_the_canary_update_fails_if_the_execution_role_cannot_read_its_alarms(
    hosting: Hosting,
) -> None:
    from mlops.deployment import deployment_config

    rollout = deployment_config(
        {
            "type": "CANARY",
            "wait_seconds": 0,
            "baking_seconds": 0,
            "max_seconds": 600,
            "alarms": rollback_alarms(hosting.stack),
        }
    )
    sagemaker = hosting.sagemaker
    old = hosting.config("v1")
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName=old)
    assert wait_endpoint(sagemaker, "ep")["EndpointStatus"] == "InService"
    with pytest.raises(ClientError) as caught:
        sagemaker.update_endpoint(
            EndpointName="ep", EndpointConfigName=hosting.config("v2"), DeploymentConfig=rollout
        )
    error = caught.value.response["Error"]
    role = sagemaker_role(hosting.stack)
    session = f"arn:aws:sts::{hosting.stack.account_id}:assumed-role/{role.rsplit('/', 1)[-1]}/"
    alarm = f"arn:aws:cloudwatch:{REGION}:{hosting.stack.account_id}:alarm:"
    assert error["Code"] == "ValidationException"
    assert f"with the execution role {role}: User: {session}SageMaker" in error["Message"]
    denied = f"perform: cloudwatch:DescribeAlarms on resource: {alarm}{hosting.stack.name}-"
    assert denied in error["Message"]
    assert "on the auto-rollback alarms you specify" in error["Message"]
    # refused: the endpoint still serves the old config and was never updating
    endpoint = sagemaker.describe_endpoint(EndpointName="ep")
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", old)
    # CreateEndpoint with the same DeploymentConfig is refused the same way
    with pytest.raises(ClientError, match="cloudwatch:DescribeAlarms"):
        sagemaker.create_endpoint(
            EndpointName="ep2", EndpointConfigName=hosting.config("v3"), DeploymentConfig=rollout
        )


def test_the_template_lets_the_execution_role_read_the_rollback_alarms() -> None:
    from localcloud.services.sagemaker import guardrails

    stack = pipeline_stack()
    iam.install(iam.Enforcer(stack))
    try:
        names = rollback_alarms(stack)
        guardrails.check_alarm_access([sagemaker_role(stack)], names, stack.account_id, REGION)
    finally:
        iam.uninstall()


# --------------------------------------------------------------------- Application Auto Scaling
@pytest.fixture(scope="module")
def cloud() -> Iterator[EnforcedCloud]:
    with enforced_cloud() as running:
        yield running


@pytest.mark.parametrize("owner", ["AttachAutoscalingFunction", "DeployModelFunction"])
def test_registering_a_target_needs_the_alarm_permissions_on_all_alarms(
    cloud: EnforcedCloud, owner: str
) -> None:
    """Application Auto Scaling tries PutMetricAlarm, DescribeAlarms and DeleteAlarms as the
    caller with no alarm name before it registers: a statement on TargetTracking* alarms
    only (the template before) fails the registration with its ValidationException."""
    service, _, params = next(c for c in cloud.calls()[owner] if c[1] == "RegisterScalableTarget")
    client = cloud.client(owner, service)
    client.register_scalable_target(**params)  # the template's statement allows it
    sid = "TargetTrackingAlarms" if owner == "AttachAutoscalingFunction" else "RestoreScalingAlarms"
    some = f"arn:aws:cloudwatch:{REGION}:{cloud.stack.account_id}:alarm:TargetTracking*"
    with cloud.resource_of(owner, sid, some), pytest.raises(ClientError) as caught:
        client.register_scalable_target(**params)
    error = caught.value.response["Error"]
    assert (caught.value.response["ResponseMetadata"]["HTTPStatusCode"], error["Code"]) == (
        400,
        "ValidationException",
    )
    assert "is not authorized to perform: cloudwatch:PutMetricAlarm" in error["Message"]


# --------------------------------------------------------------------- resource policies
@pytest.mark.parametrize("principal", ["cloudwatch.amazonaws.com", "events.amazonaws.com"])
def test_an_alarm_publishes_to_the_topic_only_if_its_policy_lets_cloudwatch(
    tmp_path: Path, principal: str
) -> None:
    """The template's AlarmTopicPolicy replaces SNS's default policy: it must allow
    cloudwatch.amazonaws.com, or CloudWatch's alarm actions fail (the alarm's history says
    so) and nobody is notified."""
    granted = "Principal: {Service: cloudwatch.amazonaws.com}"
    copy = template_replacing(
        tmp_path / "template", granted, f"Principal: {{Service: {principal}}}"
    )
    stack = pipeline_stack(copy)
    topic = next(r for r in stack.resources if r.logical_id == "AlarmTopic")
    enforcer = iam.Enforcer(stack)
    iam.install(enforcer)
    try:
        with mock_aws():
            alarms.start(time_scale=0.02)
            try:
                history, received = _alarm_to_topic(stack, topic.arn)
            finally:
                alarms.stop()
    finally:
        iam.uninstall()
    if principal == "cloudwatch.amazonaws.com":
        assert (received, history) == (1, [])
    else:
        assert received == 0
        assert history == [
            f'Failed to execute action {topic.arn}. Received error: "CloudWatch Alarms is not '
            f'authorized to perform: SNS:Publish on resource:{topic.arn}"'
        ]


def _alarm_to_topic(stack: Stack, topic_arn: str) -> tuple[list[str], int]:
    """An alarm of the stack that goes into ALARM with the stack's topic (and its policy, as
    deployed) as action: (its failed actions, the messages a subscribed queue received)."""
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    sns.create_topic(Name=topic_arn.rsplit(":", 1)[1])
    policy = next(r for r in stack.resources if r.type == "AWS::SNS::TopicPolicy")
    _topic_policy(policy, lambda service: boto3.client(service, region_name=REGION))
    queue = sqs.create_queue(QueueName="mail")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
    name = f"{stack.name}-endpoint-5xx"
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="Test",
        MetricName="Errors",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        AlarmActions=[topic_arn],
    )

    def state() -> str:
        cloudwatch.put_metric_data(
            Namespace="Test", MetricData=[{"MetricName": "Errors", "Value": 5}]
        )
        alarms.EVALUATOR.run_once(force=True)
        return cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"]

    wait_for(state, lambda s: s == "ALARM", 10)
    actions = cloudwatch.describe_alarm_history(AlarmName=name, HistoryItemType="Action")
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    return [item["HistorySummary"] for item in actions["AlarmHistoryItems"]], len(messages)


@dataclass
class _Rule:
    """A deployed rule as the trigger reads it (moto's Rule has these fields)."""

    name: str
    arn: str
    state: str
    event_pattern: EventPattern
    targets: list[dict[str, Any]]


@pytest.mark.parametrize("principal", ["events.amazonaws.com", "sns.amazonaws.com"])
def test_an_event_the_rule_cannot_deliver_is_dead_lettered_if_the_queue_policy_allows(
    tmp_path: Path, principal: str
) -> None:
    """EventBridge sends an event it may not deliver (no retries for a permission error)
    to the target's dead-letter queue, whose policy must let events.amazonaws.com send it
    for that rule; else the event is dropped."""
    granted = "Principal: {Service: events.amazonaws.com}"
    copy = template_replacing(
        tmp_path / "template", granted, f"Principal: {{Service: {principal}}}"
    )
    stack = pipeline_stack(copy)
    rule = stack.rules[0]
    queue = next(r for r in stack.resources if r.logical_id == "TriggerDeadLetterQueue")
    assert rule.dead_letter_arn == queue.arn
    enforcer = iam.Enforcer(stack)
    enforcer.policies[rule.role_arn] = ()  # the rule's role may not start the execution
    iam.install(enforcer)
    try:
        with mock_aws():
            sqs = boto3.client("sqs", region_name=REGION)
            url = sqs.create_queue(QueueName=queue.name)["QueueUrl"]
            policy = next(r for r in stack.resources if r.type == "AWS::SQS::QueuePolicy")
            _queue_policy(policy, lambda service: boto3.client(service, region_name=REGION))
            target = {
                "Id": rule.target_id,
                "Arn": rule.target_arn,
                "RoleArn": rule.role_arn,
                "DeadLetterConfig": {"Arn": rule.dead_letter_arn},
            }
            deployed = _Rule(
                rule.name,
                rule.arn,
                "ENABLED",
                EventPattern.load(json.dumps(rule.pattern)),
                [target],
            )
            event = s3_events.s3_event(
                detail_type="Object Created",
                event_name="s3:ObjectCreated:Put",
                bucket=bucket(stack),
                key="datasets/digits.tar.gz",
                size=1,
                etag="e",
                version_id="v1",
                region=REGION,
                account_id=stack.account_id,
            )
            started = s3_events.deliver(event, [deployed], lambda *args: pytest.fail("started"))
            messages = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            ).get("Messages", [])
    finally:
        iam.uninstall()
    assert started == []
    if principal == "sns.amazonaws.com":
        assert messages == []
        return
    (message,) = messages
    assert json.loads(message["Body"]) == event
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert (attributes["RULE_ARN"], attributes["ERROR_CODE"]) == (rule.arn, "NO_PERMISSIONS")
    assert "is not authorized to perform: states:StartExecution" in attributes["ERROR_MESSAGE"]


# --------------------------------------------------------------------- the execution role's writes
@pytest.mark.parametrize("granted", [True, False])
def test_a_jobs_metrics_reach_cloudwatch_only_if_its_role_may_put_them(
    tmp_path: Path, granted: bool
) -> None:
    """SageMaker publishes the MetricDefinitions' values (namespace /aws/sagemaker/TrainingJobs,
    dimension Host) as the job's role; without cloudwatch:PutMetricData there are none, and
    the job runs on."""
    template = tmp_path / "template"
    stack = pipeline_stack(
        template_without(template, SAGEMAKER_ROLE, "Metrics") if not granted else DEFAULT_TEMPLATE
    )
    iam.install(iam.Enforcer(stack))
    try:
        with mock_aws():
            loss = [{"Name": "validation:loss", "Regex": "val_loss=([0-9.]+)"}]
            host = HostMetrics(
                stack.account_id, REGION, loss, "job-1/algo-1", sagemaker_role(stack)
            )
            for line in ("epoch 1 val_loss=0.9", "noise", "epoch 2 val_loss=0.4"):
                host.feed(line)
            cloudwatch = boto3.client("cloudwatch", region_name=REGION)
            listed = cloudwatch.list_metrics(Namespace="/aws/sagemaker/TrainingJobs")["Metrics"]
    finally:
        iam.uninstall()
    if granted:
        assert host.denied is None
        assert [(m["MetricName"], m["Dimensions"]) for m in listed] == [
            ("validation:loss", [{"Name": "Host", "Value": "job-1/algo-1"}])
        ]
    else:
        assert listed == []
        assert "is not authorized to perform: cloudwatch:PutMetricData" in str(host.denied)
