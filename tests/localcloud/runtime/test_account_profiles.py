"""Account profiles: SageMaker's ResourceLimitExceeded beyond the instance quotas, Lambda's
unreserved-concurrency floor, the template's Rules, and what a new account refuses."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

import localcloud.services.sagemaker as local_sagemaker
from localcloud.cloudformation.deployer import deploy
from localcloud.cloudformation.intrinsics import TemplateError
from localcloud.cloudformation.rules import check_rules
from localcloud.cloudformation.template import resolve_stack
from localcloud.runtime.account_profiles import (
    AccountProfile,
    InstanceQuotas,
    QuotaExceeded,
    load_profile,
)
from tests.conftest import REPO
from tests.localcloud.sagemaker_support import (
    REGION,
    ROLE,
    VARIANT,
    local_sagemaker_in,
    scale_on_invocations,
    script_job_request,
    tgz,
    wait_endpoint,
    wait_for,
    wait_job,
)
from tests.localcloud.services.sagemaker.test_sagemaker import Local, add_model, aws  # noqa: F401 (a fixture)

BUCKET = "quota-bucket"
STOP_FILE = Path("/nonexistent")  # each test's own (the fixture sets it)
# Waits until its STOP_FILE appears (or 30 s): a job that stays InProgress while a test runs.
SLOW_TRAIN = r"""
import os, pathlib, time
stop = pathlib.Path(os.environ["STOP_FILE"])
deadline = time.time() + 30
while time.time() < deadline and not stop.exists():
    time.sleep(0.1)
"""


def limit_message(kind: str, limit: int, in_use: int, delta: int) -> str:
    return (
        f"The account-level service limit '{kind}' is {limit} Instances, with current "
        f"utilization of {in_use} Instances and a request delta of {delta} Instances. Please "
        "use AWS Service Quotas to request an increase for this quota."
    )


# --- profiles and messages ----------------------------------------------------------------


def test_the_shipped_profiles() -> None:
    typical, new = load_profile("typical"), load_profile("new-account")
    assert load_profile().name == "typical"  # what `make run` uses
    assert (typical.lambda_concurrent_executions, new.lambda_concurrent_executions) == (1000, 10)
    # the default pipeline fits the typical account: 2 training hosts, 1-3 endpoint instances
    # (an update runs the new fleet beside the old one)
    assert typical.training.limit("ml.m5.xlarge") >= 2
    assert typical.endpoints.limit("ml.m5.large") >= 6
    assert new.training.limit("ml.m5.xlarge") < 2 and new.endpoints.limit("ml.m5.large") == 0
    with pytest.raises(TemplateError, match="unknown account profile 'huge'"):
        load_profile("huge")


def test_a_profile_file_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "account.yaml"
    path.write_text("profile: a\nprofiles:\n  a: {endpoint_instances: {ml.m5.large: -1}}\n")
    with pytest.raises(TemplateError, match=r"ml.m5.large: expected a count >= 0"):
        load_profile(path=path)
    path.write_text("profile: b\nprofiles:\n  a: {}\n")
    with pytest.raises(TemplateError, match="profile 'b' is not under 'profiles'"):
        load_profile(path=path)


def test_instance_quota_message_is_sagemakers() -> None:
    quotas = InstanceQuotas("training job usage", {"ml.m5.xlarge": 4}, default=1)
    quotas.check("ml.m5.xlarge", in_use=2, delta=2)  # exactly at the limit
    with pytest.raises(QuotaExceeded) as info:
        quotas.check("ml.m5.xlarge", in_use=2, delta=3)
    assert str(info.value) == limit_message("ml.m5.xlarge for training job usage", 4, 2, 3)
    with pytest.raises(QuotaExceeded, match=r"'ml\.c5\.large for training job usage' is 1 "):
        quotas.check("ml.c5.large", in_use=0, delta=2)


@pytest.mark.parametrize(
    ("limit", "elsewhere", "requested", "refused_below"),
    [(10, 0, 1, 10), (1000, 0, 900, None), (1000, 0, 901, 100), (1000, 850, 60, 100)],
)
def test_the_unreserved_concurrency_floor(
    limit: int, elsewhere: int, requested: int, refused_below: int | None
) -> None:
    profile = AccountProfile("p", lambda_concurrent_executions=limit)
    if refused_below is None:
        profile.check_reserved_concurrency(elsewhere, requested)
        return
    with pytest.raises(QuotaExceeded, match=rf"below its minimum value of \[{refused_below}\]"):
        profile.check_reserved_concurrency(elsewhere, requested)


@pytest.mark.parametrize(
    ("limit", "reserved", "provisioned", "refused_below"),
    [(10, 0, 1, 10), (1000, 0, 900, None), (1000, 50, 851, 100), (100, 0, 1, 100)],
)
def test_provisioned_concurrency_without_a_reservation_keeps_the_floor(
    limit: int, reserved: int, provisioned: int, refused_below: int | None
) -> None:
    profile = AccountProfile("p", lambda_concurrent_executions=limit)
    if refused_below is None:
        profile.check_provisioned_concurrency(reserved, provisioned)
        return
    with pytest.raises(QuotaExceeded) as info:
        profile.check_provisioned_concurrency(reserved, provisioned)
    assert str(info.value) == (
        "Specified ConcurrentExecutions for function decreases account's "
        f"UnreservedConcurrentExecution below its minimum value of [{refused_below}]."
    )


def test_deploying_provisioned_concurrency_fails_on_a_new_account() -> None:
    stack = resolve_stack(
        REPO / "template.yaml",
        region=REGION,
        stack_name="pc",
        overrides={"InferenceProvisionedConcurrency": "1"},
    )
    with mock_aws():
        clients = lambda service: boto3.client(service, region_name=REGION)  # noqa: E731
        with pytest.raises(TemplateError) as info:
            deploy(stack, clients, load_profile("new-account"))
    assert str(info.value).startswith(
        "ClassifyFunctionAliaslive CREATE_FAILED: Resource handler returned message: "
        "\"Specified ConcurrentExecutions for function decreases account's "
        "UnreservedConcurrentExecution below its minimum value of [10]. (Service: Lambda"
    )
    with mock_aws():
        deploy(stack, clients, load_profile("typical"))


# --- Rules ------------------------------------------------------------------------------------


def test_rules_evaluate_like_cloudformation() -> None:
    rules = {
        "SizesAllowed": {
            "RuleCondition": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
            "Assertions": [
                {
                    "Assert": {"Fn::Contains": [["a", "b"], {"Ref": "Size"}]},
                    "AssertDescription": "Size must be a or b in prod",
                },
                {"Assert": {"Fn::EachMemberIn": [{"Ref": "Zones"}, ["z1", "z2"]]}},
            ],
        }
    }
    check_rules(rules, {"Env": "dev", "Size": "c", "Zones": ["z9"]}, {})  # condition false
    check_rules(rules, {"Env": "prod", "Size": "b", "Zones": ["z1", "z2"]}, {})
    with pytest.raises(TemplateError, match="template rule SizesAllowed: Size must be a or b"):
        check_rules(rules, {"Env": "prod", "Size": "c", "Zones": ["z1"]}, {})
    with pytest.raises(TemplateError, match="rule SizesAllowed failed"):
        check_rules(rules, {"Env": "prod", "Size": "a", "Zones": ["z1", "z3"]}, {})
    with pytest.raises(TemplateError, match="Fn::ValueOf is not available"):
        check_rules({"R": {"Assertions": [{"Assert": {"Fn::ValueOf": ["P", "VpcId"]}}]}}, {}, {})


# --- SageMaker's instance quotas (in process, under mock_aws) -------------------------------


def install(state: Path, profile: AccountProfile) -> None:
    local_sagemaker.install(state, quotas=profile)


@pytest.fixture
def sagemaker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(f"{__name__}.STOP_FILE", tmp_path / "stop")
    with local_sagemaker_in(tmp_path / "state", quotas=load_profile("new-account")):
        try:
            s3 = boto3.client("s3", region_name=REGION)
            s3.create_bucket(Bucket=BUCKET)
            s3.put_object(Bucket=BUCKET, Key="code.tar.gz", Body=tgz({"train.py": SLOW_TRAIN}))
            s3.put_object(Bucket=BUCKET, Key="data/train/a/1.jpg", Body=b"jpeg")
            yield boto3.client("sagemaker", region_name=REGION)
        finally:
            (tmp_path / "stop").touch()  # before the uninstall: the slow jobs end by themselves


def job_request(name: str, count: int, **extra: Any) -> dict[str, Any]:
    """A job on ``count`` hosts of SLOW_TRAIN (InProgress until the test's STOP_FILE)."""
    fields = {
        "StoppingCondition": {"MaxRuntimeInSeconds": 60, "MaxWaitTimeInSeconds": 120},
        "Environment": {"STOP_FILE": str(STOP_FILE)},
        **extra,
    }
    return script_job_request(
        name, BUCKET, hosts=count, code="code.tar.gz", output="out", image="img",
        metric_definitions=None, volume_gb=5, **fields,
    )  # fmt: skip


def refused(call: Any, **request: Any) -> str:
    with pytest.raises(ClientError) as info:
        call(**request)
    error = info.value.response
    assert error["Error"]["Code"] == "ResourceLimitExceeded"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    return str(error["Error"]["Message"])


def test_a_new_account_refuses_the_default_training_job(sagemaker: Any) -> None:
    message = refused(sagemaker.create_training_job, **job_request("two-hosts", 2))
    assert message == limit_message("ml.m5.xlarge for training job usage", 1, 0, 2)
    with pytest.raises(ClientError, match="two-hosts"):
        sagemaker.describe_training_job(TrainingJobName="two-hosts")  # nothing was created
    spot = job_request("spot", 2, EnableManagedSpotTraining=True)
    message = refused(sagemaker.create_training_job, **spot)
    assert "'ml.m5.xlarge for spot training job usage' is 1 Instances" in message


def test_running_jobs_count_against_the_quota(sagemaker: Any, tmp_path: Path) -> None:
    install(tmp_path / "state", replace(load_profile("new-account"), training=InstanceQuotas(
        "training job usage", {"ml.m5.xlarge": 3})))  # fmt: skip
    sagemaker.create_training_job(**job_request("first", 2))
    message = refused(sagemaker.create_training_job, **job_request("second", 2))
    assert message == limit_message("ml.m5.xlarge for training job usage", 3, 2, 2)
    sagemaker.create_training_job(**job_request("third", 1))  # 2 + 1 fits
    (tmp_path / "stop").touch()
    for name in ("first", "third"):
        assert wait_job(sagemaker, name, timeout=60)["TrainingJobStatus"] == "Completed"
    sagemaker.create_training_job(**job_request("after", 2))  # finished jobs free the quota
    assert wait_job(sagemaker, "after", timeout=60)["TrainingJobStatus"] == "Completed"


def test_a_new_account_refuses_the_default_endpoint(sagemaker: Any) -> None:
    sagemaker.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "img"})
    sagemaker.create_endpoint_config(
        EndpointConfigName="c",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "m",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    message = refused(sagemaker.create_endpoint, EndpointName="ep", EndpointConfigName="c")
    assert message == limit_message("ml.m5.large for endpoint usage", 0, 0, 1)
    assert sagemaker.list_endpoints()["Endpoints"] == []


# --- endpoints: scaling and blue/green updates count against the quota ----------------------


def test_scaling_and_updates_count_running_endpoints(aws: Local) -> None:  # noqa: F811
    serve = aws.state.parent / "fake_serve.py"  # the `aws` fixture's model server
    profile = replace(
        load_profile("typical"), endpoints=InstanceQuotas("endpoint usage", {"ml.m5.large": 2})
    )
    local_sagemaker.install(aws.state, serve_command=(str(serve),), time_scale=0.02, quotas=profile)
    aws.sagemaker.create_endpoint(
        EndpointName="ep", EndpointConfigName=add_model(aws, "v1", instances=1)
    )
    wait_endpoint(aws.sagemaker, "ep")
    capacity = {"VariantName": VARIANT, "DesiredInstanceCount": 3}
    message = refused(
        aws.sagemaker.update_endpoint_weights_and_capacities,
        EndpointName="ep",
        DesiredWeightsAndCapacities=[capacity],
    )
    assert message == limit_message("ml.m5.large for endpoint usage", 2, 1, 2)
    aws.sagemaker.update_endpoint_weights_and_capacities(
        EndpointName="ep", DesiredWeightsAndCapacities=[{**capacity, "DesiredInstanceCount": 2}]
    )
    assert wait_endpoint(aws.sagemaker, "ep")["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    # blue/green: the new fleet (2 instances kept) would run beside the old one
    message = refused(
        aws.sagemaker.update_endpoint,
        EndpointName="ep",
        EndpointConfigName=add_model(aws, "v2", instances=1),
        RetainAllVariantProperties=True,
    )
    assert message == limit_message("ml.m5.large for endpoint usage", 2, 2, 2)
    assert aws.sagemaker.describe_endpoint(EndpointName="ep")["EndpointConfigName"] == "config-v1"
    message = refused(
        aws.sagemaker.create_endpoint, EndpointName="ep2", EndpointConfigName="config-v2"
    )
    assert message == limit_message("ml.m5.large for endpoint usage", 2, 2, 1)


def test_autoscaling_beyond_the_quota_is_a_failed_scaling_activity(aws: Local) -> None:  # noqa: F811
    serve = aws.state.parent / "fake_serve.py"
    profile = replace(
        load_profile("typical"), endpoints=InstanceQuotas("endpoint usage", {"ml.m5.large": 2})
    )
    local_sagemaker.install(aws.state, serve_command=(str(serve),), time_scale=0.02, quotas=profile)
    aws.sagemaker.create_endpoint(
        EndpointName="ep", EndpointConfigName=add_model(aws, "v1", instances=2)
    )
    wait_endpoint(aws.sagemaker, "ep")
    resource = scale_on_invocations(aws.scaling, "ep", max_capacity=4, scale_in_cooldown=600)

    def failed() -> list[dict[str, Any]]:  # traffic far above 5 calls per instance per "minute"
        aws.runtime.invoke_endpoint(EndpointName="ep", Body=b"\xff\xd8 jpeg")
        activities = aws.scaling.describe_scaling_activities(
            ServiceNamespace="sagemaker", ResourceId=resource
        )["ScalingActivities"]
        return [a for a in activities if a["StatusCode"] == "Failed"]

    (activity, *_) = wait_for(failed, bool, 30)
    assert activity["StatusMessage"].startswith("Failed to set desired instance count to ")
    assert (
        "'ml.m5.large for endpoint usage' is 2 Instances, with current utilization of 2"
        in (activity["StatusMessage"])
    )
    endpoint = aws.sagemaker.describe_endpoint(EndpointName="ep")
    assert endpoint["ProductionVariants"][0]["DesiredInstanceCount"] == 2
