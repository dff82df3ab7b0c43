"""A call refused by a service quota becomes QuotaExceededError (the name the state machine
retries with backoff), with a message that names the quota to raise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

import localcloud.services.sagemaker as local_sagemaker
from localcloud.runtime.account_profiles import load_profile
from mlops.errors import PipelineError, QuotaExceededError
from mlops.observability import pipeline_handler
from tests.localcloud.runtime.test_account_profiles import job_request


@pytest.fixture
def new_account(tmp_path: Path, aws_env: None) -> Iterator[Any]:
    try:
        with mock_aws():
            local_sagemaker.install(tmp_path / "state", quotas=load_profile("new-account"))
            yield boto3.client("sagemaker", region_name="us-east-1")
    finally:
        local_sagemaker.uninstall()


def test_resource_limit_exceeded_becomes_quota_exceeded(new_account: Any, lambda_context) -> None:
    @pipeline_handler("start_training")
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        new_account.create_training_job(**job_request("refused", 2))
        return {}

    with pytest.raises(QuotaExceededError) as info:
        handler({"run_id": "r1"}, lambda_context)
    message = str(info.value)
    assert isinstance(info.value, PipelineError)
    assert message.startswith("start_training: CreateTrainingJob refused by a service quota: ")
    assert "'ml.m5.xlarge for training job usage' is 1 Instances" in message
    assert message.endswith("(or choose an instance type the account has quota for)")
    assert type(info.value).__name__ == "QuotaExceededError"  # the ErrorEquals name


def test_other_client_errors_pass_unchanged(lambda_context) -> None:
    @pipeline_handler("deploy_model")
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        error = {"Error": {"Code": "ValidationException", "Message": "bad"}}
        raise ClientError(error, "CreateEndpoint")

    with pytest.raises(ClientError, match="bad"):
        handler({}, lambda_context)
