"""Helpers shared by the pipeline functions' tests."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.stub import Stubber
from moto.sagemaker.models import SageMakerModelBackend

from localcloud.services.sagemaker import model_registry
from mlops.aws import client

METRIC_DEFINITIONS = [
    {"Name": name, "Regex": f"{name}=([0-9.]+)"}
    for name in ("train_loss", "train_acc", "valid_loss", "valid_acc", "test_loss", "test_acc")
] + [{"Name": "epoch", "Regex": r"\[metrics\] epoch=([0-9]+)"}]


def registry_as_on_aws(monkeypatch: Any) -> None:
    """moto's model registry, fixed where it differs from SageMaker's as the local cloud
    fixes it (UpdateModelPackage keeps the metadata it is not given), for one test: the
    patched methods are put back after it (``monkeypatch``), so no test sees them twice."""
    for name in ("create_model", "create_model_package", "update_model_package"):
        monkeypatch.setattr(SageMakerModelBackend, name, getattr(SageMakerModelBackend, name))
    model_registry.install()


@contextmanager
def stubbed(service: str) -> Iterator[Stubber]:
    """Stub the cached client the handlers use; every queued response must be consumed.

    Stubber validates each expected request against botocore's service model, so these
    tests pin the exact request shapes the real service accepts.
    """
    with Stubber(client(service)) as stub:
        yield stub
        stub.assert_no_pending_responses()


def write_training_code(root: Path) -> Path:
    """A minimal SageMaker source directory shaped like training/."""
    (root / "imgcls" / "__pycache__").mkdir(parents=True)
    (root / "train.py").write_text("print('train')\n")
    (root / "inference.py").write_text("def model_fn(model_dir): ...\n")
    (root / "serve.py").write_text("# not part of the sourcedir\n")
    (root / "metric_definitions.json").write_text(json.dumps(METRIC_DEFINITIONS))
    (root / "imgcls" / "__init__.py").write_text("")
    (root / "imgcls" / "model.py").write_text("ARCH = 'resnet50'\n")
    (root / "imgcls" / "__pycache__" / "model.cpython-313.pyc").write_bytes(b"\0")
    return root


def describe_endpoint_response(name: str, status: str, config: str | None, **extra: Any) -> dict:
    response: dict[str, Any] = {
        "EndpointName": name,
        "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{name}",
        "EndpointStatus": status,
        "CreationTime": "2026-11-24T10:00:00Z",
        "LastModifiedTime": "2026-11-24T10:05:00Z",
        "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": 2}],
        **extra,
    }
    if config:
        response["EndpointConfigName"] = config
    return response


def endpoint_config_response(name: str, instance_type: str) -> dict:
    return {
        "EndpointConfigName": name,
        "EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{name}",
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": instance_type}
        ],
        "CreationTime": "2026-11-24T10:00:00Z",
    }


def create_lock_table(table_name: str) -> Any:
    import boto3

    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=table_name,
        AttributeDefinitions=[{"AttributeName": "lock_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "lock_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return dynamodb


def hold_lock(dynamodb: Any, table_name: str, key: str, holder: str, expires_at: float) -> None:
    dynamodb.put_item(
        TableName=table_name,
        Item={
            "lock_id": {"S": key},
            "holder": {"S": holder},
            "run_id": {"S": "other"},
            "acquired_at": {"N": "0"},
            "expires_at": {"N": str(int(expires_at))},
        },
    )


TUNING_ARN = "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/{}"


def tuning_job(status: str, name: str, **extra: Any) -> dict[str, Any]:
    """A DescribeHyperParameterTuningJob answer: two trials running unless ``extra`` says."""
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobArn": TUNING_ARN.format(name),
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "valid_acc"},
            "ResourceLimits": {"MaxParallelTrainingJobs": 2, "MaxNumberOfTrainingJobs": 4},
        },
        "HyperParameterTuningJobStatus": status,
        "CreationTime": datetime.datetime.now(datetime.UTC),
        "TrainingJobStatusCounters": {"Completed": 0, "InProgress": 2},
        "ObjectiveStatusCounters": {"Succeeded": 0, "Pending": 2, "Failed": 0},
        **extra,
    }
