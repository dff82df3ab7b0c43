"""Local SageMaker with the project's own code: train.py on two hosts under torchrun, then an
endpoint running training.serve on the model.tar.gz the job produced."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.data_helpers import write_image_folder
from tests.localcloud.sagemaker_support import (
    REGION,
    ROLE,
    local_sagemaker_in,
    script_job_request,
    tgz_dir,
    untar,
    wait_endpoint,
    wait_job,
)

REPO = Path(__file__).resolve().parents[4]
BUCKET = "local-sagemaker-real"
HYPERPARAMETERS = {
    "arch": "resnet18", "weights": "none", "fine-tune": "all", "image-size": 32, "epochs": 1,
    "batch-size": 8, "num-workers": 0, "log-interval": 0, "smoke-images": 3,
}  # fmt: skip


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with local_sagemaker_in(tmp_path / "state"):
        yield {
            name: boto3.client(name, region_name=REGION)
            for name in ("s3", "sagemaker", "sagemaker-runtime")
        }


def test_train_py_on_two_hosts_then_serve_py_behind_an_endpoint(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    s3, sagemaker, runtime = aws["s3"], aws["sagemaker"], aws["sagemaker-runtime"]
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=tgz_dir(REPO / "training"))
    data = write_image_folder(tmp_path / "data", counts={"train": 6, "valid": 3, "test": 3})
    for path in sorted(p for p in data.rglob("*.jpg")):
        s3.put_object(
            Bucket=BUCKET, Key=f"data/{path.relative_to(data).as_posix()}", Body=path.read_bytes()
        )
    metric_definitions = json.loads((REPO / "training/metric_definitions.json").read_text())

    hyperparameters = {key: json.dumps(value) for key, value in HYPERPARAMETERS.items()}
    sagemaker.create_training_job(
        **script_job_request(
            "real",
            BUCKET,
            hyperparameters={"sagemaker_torch_distributed_enabled": "true", **hyperparameters},
            data="data",
            metric_definitions=metric_definitions,
            max_runtime=300,
        )
    )
    job = wait_job(sagemaker, "real", timeout=300)

    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    metrics = {m["MetricName"] for m in job["FinalMetricDataList"]}
    assert {"valid_acc", "test_acc", "train_loss"} <= metrics
    artifacts = job["ModelArtifacts"]["S3ModelArtifacts"]
    model = untar(
        s3.get_object(Bucket=BUCKET, Key=artifacts.split(f"{BUCKET}/", 1)[1])["Body"].read()
    )
    assert {"model.pth", "model.json", "smoke_set.json", "code/inference.py"} <= set(model)
    assert json.loads(model["model.json"])["classes"] == ["cat", "dog", "owl"]

    sagemaker.create_model(
        ModelName="real",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6",
            "ModelDataUrl": artifacts,
            "Environment": {"TOP_K": "2"},
        },
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="real",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "real",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName="real", EndpointConfigName="real")
    endpoint = wait_endpoint(sagemaker, "real", timeout=120)
    assert endpoint["EndpointStatus"] == "InService", endpoint.get("FailureReason")

    image = next((data / "test" / "owl").glob("*.jpg")).read_bytes()
    response = runtime.invoke_endpoint(EndpointName="real", Body=image, ContentType="image/jpeg")

    assert response["ContentType"].startswith("application/json")
    reply = json.loads(response["Body"].read())
    assert len(reply["predictions"]) == 2  # TOP_K from the model's Environment
    assert {p["label"] for p in reply["predictions"]} <= {"cat", "dog", "owl"}
    assert len(reply["logits"][0]) == 3
    sagemaker.delete_endpoint(EndpointName="real")
