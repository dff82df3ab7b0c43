"""tools/cleanup.py against moto's server: a verification stack's leftovers (what a run
creates: the stack, a running execution, the endpoint with autoscaling, configs, models,
the registry, a versioned bucket, log groups) are all deleted, another stack's are not;
also when `python -m tools.verify_aws` is interrupted (SIGINT, SIGTERM) mid-deploy."""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import boto3
import pytest
from botocore.client import BaseClient
from moto.sagemaker.responses import SageMakerResponse

from localcloud.services.sagemaker import model_registry
from tests.acceptance.verify_support import REPO, bare_environment, fake_sam
from tests.moto_support import moto_server
from tools.cleanup import SAM_STACK, Names, Timeouts, cleanup, leftovers

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/verify"
IMAGE = f"763104351884.dkr.ecr.{REGION}.amazonaws.com/pytorch-inference:2.6.0-cpu-py312"
QUICK = Timeouts(endpoint_s=30, stack_s=30, interval_s=0.2)


@pytest.fixture(scope="module")
def endpoint_url() -> Iterator[str]:
    """moto's server with the local cloud's DeleteModelPackage(Group), which moto lacks."""
    model_registry.install_deletes()
    try:
        with moto_server() as url:
            yield url
    finally:
        del SageMakerResponse.delete_model_package, SageMakerResponse.delete_model_package_group


def credentials(endpoint_url: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def client_of(endpoint_url: str):  # type: ignore[no-untyped-def]
    made: dict[str, BaseClient] = {}

    def client(service: str) -> BaseClient:
        if service not in made:
            made[service] = boto3.client(
                service,
                endpoint_url=endpoint_url,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return made[service]

    return client


def stack_template(names: Names) -> str:
    """The stack's part of what cleanup deletes: its state machine and a function's logs."""
    machine = {"StartAt": "W", "States": {"W": {"Type": "Pass", "End": True}}}
    return json.dumps(
        {
            "Resources": {
                "Machine": {
                    "Type": "AWS::StepFunctions::StateMachine",
                    "Properties": {
                        "StateMachineName": names.state_machine,
                        "DefinitionString": json.dumps(machine),
                        "RoleArn": ROLE,
                    },
                },
                "Logs": {
                    "Type": "AWS::Logs::LogGroup",
                    "Properties": {"LogGroupName": f"/aws/lambda/{names.stack}/Classify"},
                },
            }
        }
    )


# The SAM CLI's own stack (`sam deploy --resolve-s3`): one bucket for every SAM app
SAM_TEMPLATE = json.dumps(
    {
        "Resources": {
            "SamCliSourceBucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {"VersioningConfiguration": {"Status": "Enabled"}},
            }
        },
        "Outputs": {"SourceBucket": {"Value": {"Ref": "SamCliSourceBucket"}}},
    }
)


def create_what_a_run_leaves(client, names: Names) -> None:  # type: ignore[no-untyped-def]
    """Everything a verification stack and one run of its pipeline create."""
    cfn = client("cloudformation")
    with contextlib.suppress(cfn.exceptions.AlreadyExistsException):
        cfn.create_stack(StackName=SAM_STACK, TemplateBody=SAM_TEMPLATE)
    (sam,) = cfn.describe_stacks(StackName=SAM_STACK)["Stacks"]
    sam_bucket = sam["Outputs"][0]["OutputValue"]
    client("s3").put_object(Bucket=sam_bucket, Key=f"{names.stack}/0a1b2c.template", Body=b"{}")
    client("cloudformation").create_stack(StackName=names.stack, TemplateBody=stack_template(names))
    sfn = client("stepfunctions")
    (machine,) = [
        m["stateMachineArn"]
        for m in sfn.list_state_machines()["stateMachines"]
        if m["name"] == names.state_machine
    ]
    sfn.start_execution(stateMachineArn=machine, input="{}")
    sm = client("sagemaker")
    run = f"{names.endpoint}-0123456789abcdef"
    sm.create_model(ModelName=run, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(
        EndpointConfigName=run,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": run,
                "InitialInstanceCount": 2,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sm.create_endpoint(EndpointName=names.endpoint, EndpointConfigName=run)
    resource = f"endpoint/{names.endpoint}/variant/AllTraffic"
    client("application-autoscaling").register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=2,
        MaxCapacity=3,
    )
    sm.create_model_package_group(ModelPackageGroupName=names.group)
    for _ in range(2):
        sm.create_model_package(
            ModelPackageGroupName=names.group,
            ModelApprovalStatus="Approved",
            InferenceSpecification={
                "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://b/model.tar.gz"}],
                "SupportedContentTypes": ["image/jpeg"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        )
    s3 = client("s3")
    bucket = f"{names.bucket_prefix}a1b2c3d4e5f6"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"one", b"two"):  # two versions, then a delete marker
        s3.put_object(Bucket=bucket, Key="datasets/digits.tar.gz", Body=body)
    s3.put_object(Bucket=bucket, Key=f"models/{run}/output/model.tar.gz", Body=b"m")
    s3.delete_object(Bucket=bucket, Key="datasets/digits.tar.gz")
    s3.create_multipart_upload(Bucket=bucket, Key="datasets/big.zip")
    logs = client("logs")
    logs.create_log_group(logGroupName=f"/aws/sagemaker/Endpoints/{names.endpoint}")
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")  # the account's
    logs.create_log_stream(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=f"{run}/algo-1-1765152000"
    )


def test_cleanup_deletes_everything_a_verification_run_left_and_nothing_else(
    endpoint_url: str,
) -> None:
    client = client_of(endpoint_url)
    names = Names(
        stack="icp-verify-20261208-010203-ab12", endpoint="icp-verify-20261208-010203-ab12"
    )
    # another verification stack whose name starts with this one's
    other = Names(stack=f"{names.stack}-2", endpoint=f"{names.endpoint}-2")
    create_what_a_run_leaves(client, names)
    create_what_a_run_leaves(client, other)
    others = leftovers(client, other)
    found = leftovers(client, names)
    assert len(found) == 14, found  # each kind of resource is found before ...
    said: list[str] = []
    assert cleanup(client, names, said.append, QUICK) == []  # ... and gone after
    assert leftovers(client, names) == []
    assert leftovers(client, other) == others
    assert any("stopped execution" in line for line in said), said
    assert cleanup(client, names, said.append, QUICK) == []  # nothing to do: no error


def verify_aws_environment(endpoint_url: str, home: Path) -> dict[str, str]:
    """`python -m tools.verify_aws`'s environment: moto's server as the account."""
    return {
        **bare_environment(home),
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }


def _lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_verify_aws_deletes_what_it_created(
    endpoint_url: str, tmp_path: Path, signum: signal.Signals
) -> None:
    client = client_of(endpoint_url)
    stack = f"icp-verify-20261208-020304-{signum.name.lower()}"
    names = Names(stack=stack, endpoint=stack)
    create_what_a_run_leaves(client, names)
    sam = fake_sam(tmp_path, 'echo "sam $$ running"\nexec sleep 600')  # runs until stopped
    env = {**verify_aws_environment(endpoint_url, tmp_path), "CONFIRM": "yes", "SAM": str(sam)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.verify_aws", "--stack", stack],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True).start()
    said: list[str] = []
    try:
        while not said or "running" not in said[-1]:  # the estimate, then sam's line
            try:
                said.append(out.get(timeout=120))
            except queue.Empty:
                raise AssertionError(f"sam did not start within 120 s: {said}") from None
        sam_pid = int(said[-1].split()[1])
        proc.send_signal(signum)
        status = proc.wait(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    while not out.empty():
        said.append(out.get_nowait())
    assert status == 130, said
    assert not Path(f"/proc/{sam_pid}").exists(), "".join(said)
    assert leftovers(client, names) == []
