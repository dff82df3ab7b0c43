"""Helpers of test_guardrails.py: a model server that fails or answers slowly on request,
endpoints, alarms with an SNS topic and SQS queue, traffic and status watchers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.sagemaker.models import sagemaker_backends

import localcloud.services.sagemaker as local_sagemaker
from tests.localcloud.sagemaker_support import (
    FAKE_SERVE,
    REGION,
    ROLE,
    VARIANT,
    tgz,
    wait_endpoint,
    wait_for,
)

ACCOUNT = "123456789012"
BUCKET = "guardrails"
SCALE = 0.02


@dataclass
class Local:
    s3: Any
    sagemaker: Any
    runtime: Any
    cloudwatch: Any
    sns: Any
    sqs: Any
    state: Path


@contextmanager
def local_guardrails(root: Path, scale: float = SCALE) -> Iterator[Local]:
    """The local SageMaker (fake model servers, time scale ``scale``) in moto, with clients
    and a bucket for the models; uninstalled on exit."""
    serve = root / "fake_serve.py"
    serve.write_text(FAKE_SERVE)
    try:
        with mock_aws():
            local_sagemaker.install(root / "state", serve_command=(str(serve),), time_scale=scale)
            s3 = boto3.client("s3", region_name=REGION)
            s3.create_bucket(Bucket=BUCKET)
            yield Local(
                s3=s3,
                sagemaker=boto3.client("sagemaker", region_name=REGION),
                runtime=boto3.client("sagemaker-runtime", region_name=REGION),
                cloudwatch=boto3.client("cloudwatch", region_name=REGION),
                sns=boto3.client("sns", region_name=REGION),
                sqs=boto3.client("sqs", region_name=REGION),
                state=root / "state",
            )
    finally:
        local_sagemaker.uninstall()


def add_model(aws: Local, version: str, instances: int = 2, **behaviour: Any) -> str:
    model = {"version": version, **behaviour}
    key = f"models/{version}.tar.gz"
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=tgz({"model.json": json.dumps(model)}))
    aws.sagemaker.create_model(
        ModelName=f"model-{version}",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "inference:1", "ModelDataUrl": f"s3://{BUCKET}/{key}"},
    )
    aws.sagemaker.create_endpoint_config(
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


def start_endpoint(aws: Local, version: str = "v1", instances: int = 2) -> None:
    aws.sagemaker.create_endpoint(
        EndpointName="ep", EndpointConfigName=add_model(aws, version, instances)
    )
    assert wait_endpoint(aws.sagemaker, "ep")["EndpointStatus"] == "InService"


def alarm_topic(aws: Local) -> tuple[str, str]:
    """An SNS topic with an SQS queue subscribed; returns (topic ARN, queue URL)."""
    topic = aws.sns.create_topic(Name="alarms")["TopicArn"]
    queue = aws.sqs.create_queue(QueueName="alarm-mail")["QueueUrl"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    aws.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn["Attributes"]["QueueArn"])
    return topic, queue


def put_alarm(
    aws: Local,
    name: str,
    metric: str,
    threshold: float,
    topic: str | None = None,
    statistic: str = "Sum",
    comparison: str = "GreaterThanOrEqualToThreshold",
) -> None:
    aws.cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/SageMaker",
        MetricName=metric,
        Dimensions=[
            {"Name": "EndpointName", "Value": "ep"},
            {"Name": "VariantName", "Value": VARIANT},
        ],
        Statistic=statistic,
        Period=60,
        EvaluationPeriods=1,
        Threshold=threshold,
        ComparisonOperator=comparison,
        TreatMissingData="notBreaching",
        AlarmActions=[topic] if topic else [],
    )


@dataclass
class Traffic:
    """Requests in a loop on a thread: (time, version or error code) for each."""

    runtime: Any
    replies: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                body = self.runtime.invoke_endpoint(EndpointName="ep", Body=b"x")["Body"].read()
                self.replies.append((time.monotonic(), json.loads(body)["version"]))
            except ClientError as exc:
                self.replies.append((time.monotonic(), exc.response["Error"]["Code"]))
            time.sleep(0.005)

    def since(self, start: float) -> list[str]:
        return [what for t, what in self.replies if t >= start]

    def answers_since(self, start: float, count: int, timeout: float = 30) -> list[str]:
        """The replies after ``start`` once there are at least ``count`` (bounded wait)."""
        return wait_for(lambda: self.since(start), lambda got: len(got) >= count, timeout)


@dataclass
class StatusWatch:
    """Every EndpointStatus the endpoint passes through (read from moto's backend)."""

    seen: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        endpoints = sagemaker_backends[ACCOUNT][REGION].endpoints
        while not self.stop.is_set():
            endpoint = endpoints.get("ep")
            status = endpoint.endpoint_status if endpoint else None
            if status and (not self.seen or self.seen[-1] != status):
                self.seen.append(status)
            time.sleep(0.001)


def start(*watchers: Traffic | StatusWatch) -> None:
    for watcher in watchers:
        threading.Thread(target=watcher.run, daemon=True).start()


def canary(
    percent: int = 25, wait: int = 300, termination: int = 100, alarms: tuple[str, ...] = ()
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": wait,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": percent},
            },
            "TerminationWaitInSeconds": termination,
            "MaximumExecutionTimeoutInSeconds": 1800,
        }
    }
    if alarms:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarms]}
    return config


def wait_settled(aws: Local, timeout: float = 40) -> dict[str, Any]:
    """DescribeEndpoint once the endpoint is no longer changing (RollingBack included)."""
    return wait_for(
        lambda: aws.sagemaker.describe_endpoint(EndpointName="ep"),
        lambda e: e["EndpointStatus"] in ("InService", "Failed", "UpdateRollbackFailed"),
        timeout,
    )


def pending_status(aws: Local) -> tuple[str, str]:
    endpoint = aws.sagemaker.describe_endpoint(EndpointName="ep")
    summary = endpoint.get("PendingDeploymentSummary")
    if not summary:
        return endpoint["EndpointStatus"], ""
    status = summary["ProductionVariants"][0]["VariantStatus"][0]
    return status["Status"], status.get("StatusMessage", "")
