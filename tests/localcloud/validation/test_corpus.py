"""Validation refuses nothing AWS accepts: real valid values (ARNs, names, S3 URIs, ECR
image URIs, hyperparameters, policy and state-machine documents, the pipeline's own
requests) pass the shapes they are sent in."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from localcloud.services.iam.policies import role_policies
from localcloud.validation import constraints
from mlops import registry, training_job
from mlops.sourcedir import load_metric_definitions
from tests.conftest import load_event
from tests.localcloud.iam_support import pipeline_stack

ROOT = Path(__file__).resolve().parents[3]
_SESSION = botocore.session.get_session()
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/mlops-SageMakerExecutionRole-1A2B3C4D5E6F"
PACKAGE = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package/mlops-models/3"
MACHINE = f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:TrainDeployStateMachine-AbC123"
FUNCTION = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:mlops-RegisterModelFunction-Xy12"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312"


def _errors(service: str, operation: str, params: dict[str, Any]) -> list[str]:
    op = _SESSION.get_service_model(service).operation_model(operation)
    return constraints.check(op.input_shape, params)


CORPUS: list[tuple[str, str, dict[str, Any]]] = [
    ("sagemaker", "DescribeModelPackage", {"ModelPackageName": PACKAGE}),
    ("sagemaker", "DescribeModelPackage", {"ModelPackageName": "mlops-models/3"}),
    ("sagemaker", "DescribeEndpoint", {"EndpointName": "image-classifier"}),
    (
        "sagemaker",
        "CreateModel",
        {
            "ModelName": "image-classifier-c5db2e957d0d55e0",
            "ExecutionRoleArn": ROLE,
            "PrimaryContainer": {
                "Image": IMAGE,
                "ModelDataUrl": "s3://mlops-databucket-0a1b2c/models/job-1/output/model.tar.gz",
                "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "MODEL_CLASSES": "a,b c"},
            },
            "Tags": [{"Key": "aws:cloudformation:stack-name", "Value": "mlops"}],
        },
    ),
    (
        "sagemaker",
        "CreateEndpointConfig",
        {
            "EndpointConfigName": "image-classifier-c5db2e957d0d55e0",
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "image-classifier-c5db2e957d0d55e0",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
            "DataCaptureConfig": {
                "EnableCapture": True,
                "InitialSamplingPercentage": 100,
                "DestinationS3Uri": "s3://mlops-databucket-0a1b2c/data-capture",
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            },
        },
    ),
    (
        "stepfunctions",
        "StartExecution",
        {
            "stateMachineArn": MACHINE,
            "name": "run-0123456789abcdef",
            "input": json.dumps({"detail": {"bucket": {"name": "b"}, "object": {"key": "a b"}}}),
        },
    ),
    ("lambda", "Invoke", {"FunctionName": FUNCTION, "Payload": b"{}"}),
    ("lambda", "Invoke", {"FunctionName": f"{FUNCTION}:live"}),
    ("lambda", "GetFunction", {"FunctionName": "mlops-RegisterModelFunction-Xy12"}),
    (
        "logs",
        "FilterLogEvents",
        {"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamNamePrefix": "job/algo-1"},
    ),
    (
        "cloudwatch",
        "PutMetricAlarm",
        {
            "AlarmName": "mlops-image-classifier-5XXErrors",
            "Namespace": "AWS/SageMaker",
            "MetricName": "Invocation5XXErrors",
            "Dimensions": [
                {"Name": "EndpointName", "Value": "image-classifier"},
                {"Name": "VariantName", "Value": "AllTraffic"},
            ],
            "Statistic": "Sum",
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": 0.0,
            "ComparisonOperator": "GreaterThanThreshold",
            "AlarmActions": [f"arn:aws:sns:us-east-1:{ACCOUNT}:mlops-alarms"],
        },
    ),
    (
        "events",
        "PutRule",
        {
            "Name": "mlops-DataUploadedRule-1XYZ",
            "EventPattern": json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"]}),
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/mlops-EventsRole-ABC",
        },
    ),
    (
        "application-autoscaling",
        "RegisterScalableTarget",
        {
            "ServiceNamespace": "sagemaker",
            "ResourceId": "endpoint/image-classifier/variant/AllTraffic",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "MinCapacity": 1,
            "MaxCapacity": 4,
        },
    ),
    ("sts", "AssumeRole", {"RoleArn": ROLE, "RoleSessionName": "botocore-session-1700000000"}),
    ("iam", "GetRole", {"RoleName": "mlops-SageMakerExecutionRole-1A2B3C4D5E6F"}),
    (
        "sns",
        "Publish",
        {"TopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT}:mlops-alarms", "Message": "é\n"},
    ),
    (
        "s3",
        "GetObject",
        {"Bucket": "mlops-databucket-0a1b2c", "Key": "datasets/dog Images (1).zip"},
    ),
    (
        "s3",
        "CopyObject",
        {
            "Bucket": "b",
            "Key": "training-input/0123/digits.tar.gz",
            "CopySource": "mlops-databucket-0a1b2c/datasets/digits.tar.gz?versionId=3HL4kqtJlc",
        },
    ),
]


@pytest.mark.parametrize(("service", "operation", "params"), CORPUS)
def test_real_values_pass(service: str, operation: str, params: dict[str, Any]) -> None:
    assert _errors(service, operation, params) == []


def test_the_pipelines_training_job_request_passes() -> None:
    run = copy.deepcopy(load_event("start_training/run.json")["run"])
    request = training_job.training_job_request(
        run,
        role_arn=ROLE,
        bucket="mlops-databucket-0a1b2c",
        submit_dir="s3://mlops-databucket-0a1b2c/training-code/ab12/sourcedir.tar.gz",
        region="us-east-1",
        metric_definitions=load_metric_definitions(ROOT / "training"),
        execution_arn=f"arn:aws:states:us-east-1:{ACCOUNT}:execution:m:run-1",
        log_level=20,
        dataset_uri="s3://mlops-databucket-0a1b2c/datasets/dogImages.zip",
        champion_uri="s3://mlops-databucket-0a1b2c/models/old/output/model.tar.gz",
    )
    assert _errors("sagemaker", "CreateTrainingJob", request) == []


@pytest.mark.parametrize(
    "reason",
    [
        "validation accuracy 0.84 reaches the required 0.7; no live model to compare with",
        "training job j reported no valid_acc metric (reported: none); check train.py's "
        '[final] line against metric_definitions.json "x" \t{y}\n' + "long " * 80,
        "the live model s3://b/models/j/output/model.tar.gz could not be evaluated: 100% ≥ ∞",
    ],
)
def test_the_registrys_metadata_passes_whatever_the_reason(reason: str) -> None:
    run = copy.deepcopy(load_event("start_training/run.json")["run"])
    job = {"TrainingJobName": "job-1", "metrics": {"valid_acc": 0.84, "weird(name)": 1e-9}}
    meta = registry.metadata(
        run, job, {"reason": reason}, execution_arn=f"{MACHINE}:run", approval_mode="auto"
    )
    assert _errors("sagemaker", "CreateModelPackage", {"CustomerMetadataProperties": meta}) == []
    assert meta["run_id"] == run["run_id"] and meta["dataset_uri"] == run["dataset"]["uri"]


def test_the_templates_documents_pass() -> None:
    """The state machine's definition and every role policy, as the deploy sends them."""
    stack = pipeline_stack()
    for machine in stack.state_machines:
        request = {"name": machine.name, "definition": machine.definition, "roleArn": ROLE}
        assert _errors("stepfunctions", "CreateStateMachine", request) == []
    documents = [entry["policy"] for entries in role_policies(stack).values() for entry in entries]
    assert documents
    for document in documents:
        request = {
            "RoleName": "r",
            "PolicyName": "p",
            "PolicyDocument": json.dumps(document, indent=2),
        }
        assert _errors("iam", "PutRolePolicy", request) == []
