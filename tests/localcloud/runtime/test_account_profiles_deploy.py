"""The real template in the local cloud under the new-account profile: what it refuses.

A reservation of inference concurrency fails the deployment as CloudFormation would; with the
defaults (no reservation) the stack deploys, its functions log to log groups with the
retention, and the pipeline's first SageMaker call (2 x ml.m5.xlarge training) is refused
with ResourceLimitExceeded naming the quota.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from localcloud.runtime.connection import Connection
from localcloud.runtime.launcher import LocalCloudProcess
from localcloud.runtime.settings import DEFAULT_PARAMETERS, Settings
from tests.conftest import REPO
from tests.localcloud.cloud_support import start_error, started
from tests.localcloud.runtime.test_account_profiles import job_request


def settings(state_dir: Path, profile: str, **parameters: str) -> Settings:
    return Settings(
        template=REPO / "template.yaml",
        parameters_file=DEFAULT_PARAMETERS,
        parameter_overrides=tuple(f"{k}={v}" for k, v in parameters.items()),
        state_dir=state_dir,
        stack_name="quota",
        account_profile=profile,
    )


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloudProcess]:
    with started(settings(tmp_path_factory.mktemp("new"), "new-account")) as process:
        yield process


@pytest.fixture(scope="module")
def new_account(cloud: LocalCloudProcess) -> Connection:
    assert cloud.connection is not None
    return cloud.connection


def test_a_reservation_fails_the_deployment_like_cloudformation(tmp_path: Path) -> None:
    message = start_error(settings(tmp_path, "new-account", InferenceReservedConcurrency="3"))
    assert "ClassifyFunction CREATE_FAILED" in message
    assert "UnreservedConcurrentExecution below its minimum value of [10]" in message
    assert "quota 'Concurrent executions'" in message


def test_the_defaults_deploy_on_a_new_account(
    cloud: LocalCloudProcess, new_account: Connection
) -> None:
    assert cloud.state["account_profile"] == "new-account"
    functions = new_account.client("lambda").list_functions()["Functions"]
    assert len(functions) >= 13
    for fn in functions:
        concurrency = new_account.client("lambda").get_function_concurrency(
            FunctionName=fn["FunctionName"]
        )
        assert "ReservedConcurrentExecutions" not in concurrency, fn["FunctionName"]


def test_every_function_logs_to_its_group_with_the_retention(new_account: Connection) -> None:
    logs = new_account.client("logs")
    groups = {
        g["logGroupName"]: g.get("retentionInDays")
        for page in logs.get_paginator("describe_log_groups").paginate(
            logGroupNamePrefix="/aws/lambda/quota/"
        )
        for g in page["logGroups"]
    }
    assert len(groups) >= 13
    assert set(groups.values()) == {30}


def test_a_new_account_refuses_the_pipelines_training_job(new_account: Connection) -> None:
    sagemaker = new_account.client("sagemaker")
    with pytest.raises(ClientError) as info:
        sagemaker.create_training_job(**job_request("quota-job", 2))
    error = info.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (
        "ResourceLimitExceeded",
        400,
    )
    assert "'ml.m5.xlarge for training job usage' is 1 Instances" in error["Error"]["Message"]
    assert "request a" in error["Error"]["Message"] and "delta of 2 Instances" in str(error)


def test_an_unknown_profile_is_a_one_line_error(tmp_path: Path) -> None:
    from localcloud.cli.commands import main

    with pytest.raises(SystemExit, match=r"unknown account profile 'nope'; account\.yaml has "):
        main(["up", "--account-profile", "nope", "--state-dir", str(tmp_path)])
