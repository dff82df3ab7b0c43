"""The acceptance test's checks, the same on the local cloud and on AWS: what a user who
uploads a data set to a freshly deployed stack must get (issue 17, `make verify-aws`).

A :class:`Target` is a deployed stack: its outputs (CloudFormation's DescribeStacks, which
AWS and the local cloud both answer), its clients and a way to POST to its HTTP API (signed
with the caller's credentials: the verification stack's API is ``ApiAuth=AWS_IAM``). Locally
the first run of tests/localcloud/test_pipeline_e2e.py goes through :func:`first_run` and
:func:`assert_promise`; on AWS, test_promise_aws.py does (``VERIFY_TARGET=aws``).
"""

from __future__ import annotations

import datetime
import json
import mimetypes
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.client import BaseClient
from botocore.config import Config

from localcloud.cloudformation import yaml_loader
from localcloud.runner.pipeline_run import classify_route
from localcloud.runtime.connection import CREDENTIALS, Connection
from localcloud.runtime.processes import wait_until

REPO = Path(__file__).resolve().parents[2]
Post = Callable[[bytes, str], tuple[int, Any]]
RESIZING = {"Updating", "SystemUpdating"}


@dataclass
class Target:
    stack: str
    outputs: dict[str, str]
    parameters: dict[str, str]
    client: Callable[[str], BaseClient]
    post: Post  # (body, content type) -> (status, decoded reply), to the classify route


def stack_outputs(cloudformation: BaseClient, stack: str) -> tuple[dict[str, str], dict[str, str]]:
    """The stack's outputs and parameters, as DescribeStacks gives them."""
    (described,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    return (
        {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])},
        {p["ParameterKey"]: p["ParameterValue"] for p in described.get("Parameters", [])},
    )


def local_target(conn: Connection, stack: str) -> Target:
    """A local cloud's stack. Its ApiUrl output is AWS's form of the URL: requests go to the
    local HTTP API's URL, signed the same way."""
    outputs, parameters = stack_outputs(conn.client("cloudformation"), stack)
    session = boto3.Session(region_name=conn.region, **CREDENTIALS)
    url = f"{conn.api_url}{classify_route(conn)}"
    return Target(stack, outputs, parameters, conn.client, signed_post(session, url))


def aws_target(stack: str, region: str) -> Target:
    session = boto3.Session(region_name=region)
    config = Config(retries={"mode": "standard", "max_attempts": 5})
    made: dict[str, BaseClient] = {}

    def client(service: str) -> BaseClient:
        if service not in made:
            made[service] = session.client(service, config=config)
        return made[service]

    outputs, parameters = stack_outputs(client("cloudformation"), stack)
    return Target(stack, outputs, parameters, client, signed_post(session, outputs["ApiUrl"]))


def target_from_environment(environ: Mapping[str, str]) -> Target:
    """``VERIFY_TARGET=aws`` with ``VERIFY_STACK`` (and the region's usual variables)."""
    if environ.get("VERIFY_TARGET") != "aws" or not environ.get("VERIFY_STACK"):
        raise ValueError("set VERIFY_TARGET=aws and VERIFY_STACK=<stack> (make verify-aws does)")
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return aws_target(environ["VERIFY_STACK"], region)


def signed_post(session: boto3.Session, url: str, timeout: float = 60) -> Post:
    """POST to an HTTP API route, signed (SigV4, execute-api) with the session's credentials."""

    def post(body: bytes, content_type: str) -> tuple[int, Any]:
        request = AWSRequest(
            method="POST", url=url, data=body, headers={"content-type": content_type}
        )
        credentials = session.get_credentials().get_frozen_credentials()
        SigV4Auth(credentials, "execute-api", session.region_name).add_auth(request)
        prepared = urllib.request.Request(
            url, data=body, method="POST", headers=dict(request.headers)
        )
        try:
            with urllib.request.urlopen(prepared, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    return post


def start_run(target: Target, archive: Path, key: str, timeout: float = 120) -> str:
    """Upload a data set; the ARN of the execution the upload started (the trigger's)."""
    machine, sfn = target.outputs["StateMachineArn"], target.client("stepfunctions")
    after = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    target.client("s3").upload_file(str(archive), target.outputs["DataBucketName"], key)
    started: list[str] = []

    def execution() -> bool:
        executions = sfn.list_executions(stateMachineArn=machine)["executions"]
        fresh = sorted(
            (e["startDate"], e["executionArn"]) for e in executions if e["startDate"] >= after
        )
        started[:] = [arn for _, arn in fresh[:1]]
        return bool(started)

    assert wait_until(execution, timeout, interval=0.2), (
        f"no execution started within {timeout} s of the upload"
    )
    return started[0]


def follow(target: Target, arn: str, timeout: float, interval: float = 1) -> dict[str, Any]:
    """The execution's description once it has ended (bounded by ``timeout``)."""
    sfn = target.client("stepfunctions")
    ended = wait_until(
        lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING", timeout, interval
    )
    assert ended, f"{arn} still running after {timeout:.0f} s, in {current_state(sfn, arn)}"
    return sfn.describe_execution(executionArn=arn)


def current_state(sfn: BaseClient, arn: str) -> str | None:
    """The state the execution entered last (the newest events come first)."""
    events = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=50)
    entered = (
        e["stateEnteredEventDetails"]["name"]
        for e in events["events"]
        if "stateEnteredEventDetails" in e
    )
    return next(entered, None)


def first_run(
    target: Target, archive: Path, key: str, timeout: float, interval: float = 1
) -> dict[str, Any]:
    return follow(target, start_run(target, archive, key), timeout, interval)


def alarm_names(stack: str, template: Path = REPO / "template.yaml") -> list[str]:
    """The template's alarms, named as CloudFormation names them for ``stack``."""
    resources = yaml_loader.load(template)["Resources"].values()
    subs = [
        r["Properties"]["AlarmName"]["Fn::Sub"]
        for r in resources
        if r["Type"] == "AWS::CloudWatch::Alarm" and "Condition" not in r
    ]
    return sorted(sub.replace("${AWS::StackName}", stack) for sub in subs)


def held_out(test_dir: Path, per_class: int = 1) -> list[Path]:
    """The last ``per_class`` images of each class folder (the smoke test takes the first)."""
    classes = sorted(p for p in test_dir.iterdir() if p.is_dir())
    return [image for c in classes for image in sorted(c.iterdir())[-per_class:]]


def classify(target: Target, image: Path) -> tuple[int, Any]:
    content_type = mimetypes.guess_type(image.name)[0] or "application/octet-stream"
    return target.post(image.read_bytes(), content_type)


def assert_promise(
    target: Target,
    description: dict[str, Any],
    images: Sequence[Path],
    min_accuracy: float,
    settle_s: float,
) -> None:
    """The run succeeded; its model is registered Approved and serves on an InService endpoint
    (once a resize that autoscaling started settles, within ``settle_s``) with autoscaling
    attached; the HTTP API classifies held-out ``images`` (their truth is their folder's
    name) at least ``min_accuracy`` right; the template's alarms exist."""
    assert description["status"] == "SUCCEEDED", (
        f"{description.get('error')}: {description.get('cause')}"
    )
    output = json.loads(description["output"])
    sm = target.client("sagemaker")
    package = sm.describe_model_package(ModelPackageName=output["model_package_arn"])
    assert package["ModelPackageGroupName"] == target.outputs["ModelPackageGroupName"]
    assert package["ModelApprovalStatus"] == "Approved", package["ModelApprovalStatus"]
    name = target.outputs["EndpointName"]
    live: dict[str, Any] = {}

    def settled() -> bool:  # autoscaling may be resizing it (Updating) as the run ends
        live.update(sm.describe_endpoint(EndpointName=name))
        return live["EndpointStatus"] not in RESIZING

    wait_until(settled, settle_s, interval=min(5, settle_s / 10))
    state = (live["EndpointStatus"], live["EndpointConfigName"], live.get("FailureReason"))
    assert state == ("InService", output["endpoint_config_name"], None), state
    scaling = target.client("application-autoscaling")
    resource = f"endpoint/{name}/variant/AllTraffic"
    (scalable,) = scaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[resource]
    )["ScalableTargets"]
    assert (scalable["MinCapacity"], scalable["MaxCapacity"]) == (
        output["autoscaling"]["min_capacity"],
        output["autoscaling"]["max_capacity"],
    )
    policies = scaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)[
        "ScalingPolicies"
    ]
    assert [p["PolicyType"] for p in policies] == ["TargetTrackingScaling"]
    answers = [(image.parent.name, *classify(target, image)) for image in images]
    failed = [(truth, status, reply) for truth, status, reply in answers if status != 200]
    assert failed == [], failed
    right = sum(reply["predictions"][0]["label"] == truth for truth, _, reply in answers)
    assert right >= min_accuracy * len(images), (
        f"{right} of {len(images)} held-out images right: {answers}"
    )
    expected = alarm_names(target.stack)
    found = target.client("cloudwatch").describe_alarms(AlarmNames=expected)["MetricAlarms"]
    assert sorted(a["AlarmName"] for a in found) == expected
