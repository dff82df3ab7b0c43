"""An IAM-enforcing local AWS endpoint for the real template, in the test process.

The template is resolved as the local cloud resolves it (parameters.yaml applied), its roles'
policies are enforced by ``localcloud.services.iam`` on a moto server, and ``client(owner,
service)`` signs requests as the role session of a function (or the state machine, or SageMaker's
execution role). ``pipeline_calls`` lists the calls each role makes in the pipeline, shaped
as the code makes them (see functions/ and layers/common/mlops/).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from localcloud.cloudformation.stack import Stack
from localcloud.cloudformation.template import load_overrides, resolve_stack
from localcloud.runtime.settings import DEFAULT_PARAMETERS, DEFAULT_TEMPLATE
from localcloud.services import iam
from localcloud.services.iam.enforce import SAGEMAKER_SESSION, SERVICE_LINKED_ROLES, STATES_SESSION

REGION = "us-east-1"
STACK = "mlops"
STATE_MACHINE = "TrainDeployStateMachine"
SAGEMAKER_ROLE = "SageMakerExecutionRole"
_SESSION = boto3.session.Session(region_name=REGION)  # one loader: service models load once


def pipeline_stack(template: Path = DEFAULT_TEMPLATE) -> Stack:
    overrides = load_overrides(DEFAULT_PARAMETERS)
    return resolve_stack(template, region=REGION, stack_name=STACK, overrides=overrides)


def template_without(folder: Path, resource: str, sid: str) -> Path:
    """A copy of template.yaml (beside links to what it references) whose ``resource`` lacks
    the policy statement ``sid``: what a user deploying a template with that gap gets."""
    text = DEFAULT_TEMPLATE.read_text()
    start = text.index(f"\n  {resource}:\n")
    end = re.compile(r"\n  [A-Za-z]").search(text, start + 1)
    block = text[start : end.start() if end else len(text)]
    statement = re.search(rf"\n( +)- Sid: {sid}\n(?:\1  .*\n)*", block)
    assert statement, f"{resource} has no statement {sid}"
    return _template_copy(folder, block, block.replace(statement.group(0), "\n", 1))


def template_replacing(folder: Path, old: str, new: str) -> Path:
    """A copy of template.yaml with the one occurrence of ``old`` replaced by ``new``."""
    return _template_copy(folder, old, new)


def _template_copy(folder: Path, old: str, new: str) -> Path:
    text = DEFAULT_TEMPLATE.read_text()
    assert text.count(old) == 1, f"template.yaml has {text.count(old)} of {old!r}"
    folder.mkdir(parents=True, exist_ok=True)
    for entry in DEFAULT_TEMPLATE.parent.iterdir():
        if entry.name != DEFAULT_TEMPLATE.name and not entry.name.startswith("."):
            (folder / entry.name).symlink_to(entry)
    copy = folder / DEFAULT_TEMPLATE.name
    copy.write_text(text.replace(old, new))
    return copy


@dataclass
class EnforcedCloud:
    stack: Stack
    enforcer: iam.Enforcer
    endpoint_url: str
    dataset_version: str = "v1"
    _clients: dict[tuple[str, str], BaseClient] = field(default_factory=dict)

    def calls(self) -> dict[str, list[Call]]:
        return pipeline_calls(self.stack, self.dataset_version)

    def role_of(self, owner: str) -> tuple[str, str]:
        """(role ARN, session name) of a function, the state machine or SageMaker."""
        if owner == STATE_MACHINE:
            machine = next(m for m in self.stack.state_machines if m.logical_id == owner)
            return machine.role_arn, STATES_SESSION
        if owner == SAGEMAKER_ROLE:
            role = next(r for r in self.stack.resources if r.logical_id == owner)
            return role.arn, SAGEMAKER_SESSION
        fn = self.stack.function(owner)
        return fn.role_arn, fn.name

    def client(self, owner: str, service: str) -> BaseClient:
        """A client signing as the owner's role session (cached: models load once)."""
        if (owner, service) not in self._clients:
            keys = self.enforcer.credentials(*self.role_of(owner))
            self._clients[owner, service] = _SESSION.client(
                service,
                endpoint_url=self.endpoint_url,
                region_name=REGION,
                aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
                aws_session_token=keys["AWS_SESSION_TOKEN"],
                config=Config(retries={"total_max_attempts": 1}, parameter_validation=False),
            )
        return self._clients[owner, service]

    def admin(self, service: str) -> BaseClient:
        """The local cloud's own (unrestricted) credentials."""
        if ("admin", service) not in self._clients:
            self._clients["admin", service] = _SESSION.client(
                service,
                endpoint_url=self.endpoint_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return self._clients["admin", service]

    @contextmanager
    def without(self, owner: str, statement: str, action: str) -> Iterator[None]:
        """The role's policies with ``action`` removed from one statement (by Sid or index)."""

        def remove(st: dict[str, Any]) -> dict[str, Any] | None:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            st["Action"] = [a for a in actions if a != action]
            return st if st["Action"] else None

        with self._changed(owner, statement, remove):
            yield

    @contextmanager
    def resource_of(self, owner: str, statement: str, resource: str) -> Iterator[None]:
        """The role's policies with one statement's Resource replaced."""
        with self._changed(owner, statement, lambda st: {**st, "Resource": resource}):
            yield

    @contextmanager
    def _changed(
        self, owner: str, statement: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> Iterator[None]:
        role_arn, session = self.role_of(owner)
        original = self.enforcer.policies[role_arn]
        changed = json.loads(json.dumps(original))
        for entry in changed:
            kept = []
            for index, st in enumerate(entry["policy"]["Statement"]):
                if statement in (st.get("Sid"), f"{entry['name']}#{index}"):
                    st = change(st)
                if st is not None:
                    kept.append(st)
            entry["policy"]["Statement"] = kept
        self.enforcer.policies[role_arn] = tuple(changed)
        self.enforcer.session(role_arn, session)
        try:
            yield
        finally:
            self.enforcer.policies[role_arn] = original
            self.enforcer.session(role_arn, session)


@contextmanager
def enforced_cloud() -> Iterator[EnforcedCloud]:
    from moto.server import ThreadedMotoServer

    stack = pipeline_stack()
    enforcer = iam.Enforcer(stack)
    iam.install(enforcer)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        port = server.get_host_and_port()[1]
        cloud = EnforcedCloud(stack, enforcer, f"http://127.0.0.1:{port}")
        s3 = cloud.admin("s3")
        s3.create_bucket(Bucket=bucket(stack))
        s3.put_bucket_versioning(
            Bucket=bucket(stack), VersioningConfiguration={"Status": "Enabled"}
        )
        for key in EXISTING_KEYS:  # what the pipeline's reads find
            reply = s3.put_object(Bucket=bucket(stack), Key=key, Body=b"x")
            if key == DATASET:
                cloud.dataset_version = reply["VersionId"]
        yield cloud
    finally:
        server.stop()
        iam.uninstall()


DATASET = "datasets/digits.tar.gz"
CODE = "training-code/0123/sourcedir.tar.gz"
MODEL = "models/image-classifier-0123456789abcdef/output/model.tar.gz"
METRICS = "models/registry/image-classifier-0123456789abcdef/metrics.json"
EXISTING_KEYS = (DATASET, CODE, MODEL, METRICS)


def service_linked_role(cloud: EnforcedCloud, *, exists: bool) -> None:
    """Application Auto Scaling's SageMaker role in the account: absent in a fresh account
    (the first registration creates it), present once scaling was attached."""
    iam_client = cloud.admin("iam")
    service, name = SERVICE_LINKED_ROLES["sagemaker"]
    with contextlib.suppress(iam_client.exceptions.NoSuchEntityException):
        iam_client.delete_role(RoleName=name)
    if exists:
        trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": service}}]}
        iam_client.create_role(
            RoleName=name,
            Path=f"/aws-service-role/{service}/",
            AssumeRolePolicyDocument=json.dumps(trust),
        )


def bucket(stack: Stack) -> str:
    return next(r.name for r in stack.resources if r.logical_id == "DataBucket")


Call = tuple[str, str, dict[str, Any]]


def pipeline_calls(stack: Stack, version: str = "v1") -> dict[str, list[Call]]:
    """Per role owner: the AWS calls it makes in the pipeline (service, operation, params)."""
    b = bucket(stack)
    endpoint = str(stack.parameters["EndpointName"])
    name = f"{endpoint}-0123456789abcdef"
    sm_role = next(r.arn for r in stack.resources if r.logical_id == SAGEMAKER_ROLE)
    table = next(r.name for r in stack.resources if r.logical_id == "DeploymentLockTable")
    machine = next(m for m in stack.state_machines if m.logical_id == STATE_MACHINE)
    execution = machine.arn.replace(":stateMachine:", ":execution:") + ":run-1"
    config_arn = f"arn:aws:sagemaker:{REGION}:{stack.account_id}:endpoint-config/{name}"
    endpoint_arn = f"arn:aws:sagemaker:{REGION}:{stack.account_id}:endpoint/{endpoint}"
    # the endpoint's tag naming its last verified config (what a failed deployment restores)
    verified = [{"Key": "mlops:verified-endpoint-config", "Value": name}]
    tags = [{"Key": "run-id", "Value": "0123456789abcdef"}]
    tuning = {"HyperParameterTuningJobName": f"{endpoint}-01234567"}  # at most 32 characters
    group = f"{stack.name}-models"
    package = f"arn:aws:sagemaker:{REGION}:{stack.account_id}:model-package/{group}/1"
    alarms = ("cloudwatch", "DescribeAlarms", {"AlarmNames": [f"{stack.name}-endpoint-5xx"]})
    dataset, code = DATASET, CODE
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{endpoint}/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    tracking = {
        **target,
        "PolicyName": "invocations",
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 70.0},
    }
    autoscaling_reads = [
        ("application-autoscaling", "DescribeScalableTargets", {"ServiceNamespace": "sagemaker"}),
        ("application-autoscaling", "DescribeScalingPolicies", {"ServiceNamespace": "sagemaker"}),
    ]
    endpoint_reads = [
        ("sagemaker", "DescribeEndpoint", {"EndpointName": endpoint}),
        ("sagemaker", "DescribeEndpointConfig", {"EndpointConfigName": name}),
    ]
    endpoint_writes = [
        ("sagemaker", "UpdateEndpoint", {"EndpointName": endpoint, "EndpointConfigName": name}),
        ("sagemaker", "DeleteEndpoint", {"EndpointName": endpoint}),
    ]
    restore_scaling = [
        ("application-autoscaling", "DeregisterScalableTarget", target),
        ("application-autoscaling", "RegisterScalableTarget", {**target, "MinCapacity": 1}),
        ("application-autoscaling", "PutScalingPolicy", tracking),
    ]
    calls: dict[str, list[Call]] = {
        "PrepareRunFunction": [
            ("sagemaker", "DescribeModelPackage", {"ModelPackageName": package}),
            ("s3", "HeadObject", {"Bucket": b, "Key": dataset}),
            ("s3", "HeadObject", {"Bucket": b, "Key": dataset, "VersionId": version}),
            ("s3", "ListObjectsV2", {"Bucket": b, "Prefix": dataset, "MaxKeys": 2}),
        ],
        "StartTrainingFunction": [
            ("s3", "ListObjectsV2", {"Bucket": b, "Prefix": code, "MaxKeys": 1}),
            ("s3", "HeadObject", {"Bucket": b, "Key": code}),
            ("s3", "PutObject", {"Bucket": b, "Key": code, "Body": b"code"}),
            ("s3", "HeadObject", {"Bucket": b, "Key": dataset, "VersionId": version}),
            ("s3", "HeadObject", {"Bucket": b, "Key": dataset}),
            (
                "s3",
                "CopyObject",
                {
                    "Bucket": b,
                    "Key": "training-input/0123456789abcdef/digits.tar.gz",
                    "CopySource": {"Bucket": b, "Key": dataset, "VersionId": version},
                },
            ),
            # a data set over 5 GiB is copied in parts; a failed part aborts the upload
            (
                "s3",
                "AbortMultipartUpload",
                {
                    "Bucket": b,
                    "Key": "training-input/0123456789abcdef/digits.tar.gz",
                    "UploadId": "u",
                },
            ),
            (
                "sagemaker",
                "CreateTrainingJob",
                {"TrainingJobName": name, "RoleArn": sm_role, "Tags": tags},
            ),
            ("sagemaker", "DescribeTrainingJob", {"TrainingJobName": name}),
            # the optional tuning stage (TuningMaxJobs above 0)
            ("sagemaker", "CreateHyperParameterTuningJob", {**tuning, "Tags": tags}),
            ("sagemaker", "DescribeHyperParameterTuningJob", tuning),
            *endpoint_reads,
            ("sagemaker", "DescribeModel", {"ModelName": name}),
            ("sagemaker", "DescribeModelPackage", {"ModelPackageName": package}),
        ],
        "RegisterModelFunction": [
            ("sagemaker", "DescribeTrainingJob", {"TrainingJobName": name}),
            ("sagemaker", "ListModelPackages", {"ModelPackageGroupName": group}),
            ("sagemaker", "DescribeModelPackage", {"ModelPackageName": package}),
            ("sagemaker", "CreateModelPackage", {"ModelPackageGroupName": group}),
            ("s3", "ListObjectsV2", {"Bucket": b, "Prefix": METRICS, "MaxKeys": 1}),
            ("s3", "HeadObject", {"Bucket": b, "Key": METRICS}),
            ("s3", "PutObject", {"Bucket": b, "Key": METRICS, "Body": b"{}"}),
        ],
        "RejectModelFunction": [
            (
                "sagemaker",
                "UpdateModelPackage",
                {"ModelPackageArn": package, "ModelApprovalStatus": "Rejected"},
            ),
        ],
        "CheckTrainingFunction": [
            ("sagemaker", "DescribeTrainingJob", {"TrainingJobName": name}),
            ("sagemaker", "DescribeHyperParameterTuningJob", tuning),
        ],
        "AcquireLockFunction": [
            ("dynamodb", "PutItem", {"TableName": table, "Item": {"lock_id": {"S": endpoint}}}),
            ("dynamodb", "GetItem", {"TableName": table, "Key": {"lock_id": {"S": endpoint}}}),
            ("stepfunctions", "DescribeExecution", {"executionArn": execution}),
        ],
        "ReleaseLockFunction": [
            ("dynamodb", "DeleteItem", {"TableName": table, "Key": {"lock_id": {"S": endpoint}}}),
        ],
        "DeployModelFunction": [
            (
                "sagemaker",
                "CreateModel",
                {"ModelName": name, "ExecutionRoleArn": sm_role, "Tags": tags},
            ),
            ("sagemaker", "CreateEndpointConfig", {"EndpointConfigName": name, "Tags": tags}),
            *endpoint_reads,
            (
                "sagemaker",
                "CreateEndpoint",
                {"EndpointName": endpoint, "EndpointConfigName": name, "Tags": tags},
            ),
            *endpoint_writes,
            ("sagemaker", "ListTags", {"ResourceArn": config_arn}),
            ("sagemaker", "ListTags", {"ResourceArn": endpoint_arn}),
            ("sagemaker", "DescribeModelPackage", {"ModelPackageName": package}),
            # the live model's version, when a better one may have gone live since the gate
            ("sagemaker", "DescribeModel", {"ModelName": name}),
            alarms,
            *autoscaling_reads,
            *restore_scaling,
        ],
        "CheckEndpointFunction": [
            ("sagemaker", "DescribeEndpoint", {"EndpointName": endpoint}),
            alarms,
        ],
        "AttachAutoscalingFunction": [
            ("application-autoscaling", "RegisterScalableTarget", {**target, "MinCapacity": 1}),
            ("application-autoscaling", "PutScalingPolicy", tracking),
            ("sagemaker", "DescribeEndpoint", {"EndpointName": endpoint}),
            ("sagemaker", "AddTags", {"ResourceArn": endpoint_arn, "Tags": verified}),
        ],
        "SmokeTestFunction": [
            ("s3", "GetObject", {"Bucket": b, "Key": MODEL}),
            ("lambda", "Invoke", {"FunctionName": stack.function("ClassifyFunction").name}),
        ],
        "RollbackFunction": [
            *endpoint_reads,
            ("sagemaker", "ListTags", {"ResourceArn": endpoint_arn}),
            *endpoint_writes,
            *autoscaling_reads,
            *restore_scaling,
        ],
        "DescribeFailureFunction": [
            ("stepfunctions", "GetExecutionHistory", {"executionArn": execution}),
        ],
        "ClassifyFunction": [
            ("sagemaker-runtime", "InvokeEndpoint", {"EndpointName": endpoint, "Body": b"{}"}),
        ],
        STATE_MACHINE: [
            ("lambda", "Invoke", {"FunctionName": fn.arn})
            for fn in stack.functions
            if fn.logical_id != "ClassifyFunction"
        ],
    }
    return calls


# What no call of the local pipeline exercises, and why (the removal test skips these).
NOT_EXERCISED: dict[tuple[str, ...], str] = {
    # Application Auto Scaling checks this as the caller on AWS: the endpoint config behind
    # the variant.
    ("AttachAutoscalingFunction", "sagemaker:DescribeEndpointConfig"): "checked by AWS only",
    # deleting the alarms of a target-tracking policy that PutScalingPolicy replaces
    ("AttachAutoscalingFunction", "cloudwatch:DeleteAlarms"): "replacing a policy only",
    # SageMaker's own log reads (the console, the SDK's log tailing), not the job's writes
    (SAGEMAKER_ROLE, "logs:DescribeLogStreams"): "read by tools, not by the local SageMaker",
    # Step Functions delivers execution logs to CloudWatch Logs as its role.
    (STATE_MACHINE, "logs:*"): "log delivery is not emulated",
    # A new package's ARN (group/version) exists only after the call: locally the request is
    # for "*", which either of the two statements granting it allows.
    ("RegisterModelFunction", "sagemaker:CreateModelPackage"): "ARN known after creation",
}
