"""Managed spot training in the local SageMaker: a reclaim stops the hosts mid-epoch, the
job goes Interrupted and starts again on new hosts from the checkpoints it saved, and its
billable time is below its training time; past MaxWaitTimeInSeconds it ends Stopped."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.sagemaker.exceptions import ValidationError

from localcloud.runtime import admin_api
from localcloud.services.sagemaker import container
from localcloud.services.sagemaker.training import TRAINING_RUNS
from tests.localcloud.sagemaker_support import (
    REGION,
    ROLE,
    local_sagemaker_in,
    training_job_request,
    wait_for,
    wait_job,
)
from tests.parts_support import missing_part

BUCKET = "spot"
ACCOUNT = "123456789012"
# Resumes from /opt/ml/checkpoints/epoch (as train.py resumes from its checkpoint), saves it
# after every epoch, and says where it started.
SPOT_TRAIN = r"""
import os, sys, time
path = "/opt/ml/checkpoints/epoch"
start = int(open(path).read()) if os.path.exists(path) else 0
print(f"start epoch={start}", flush=True)
for epoch in range(start, int(sys.argv[1])):
    time.sleep(float(sys.argv[2]))
    print(f"epoch={epoch} valid_acc=0.{epoch + 1}", flush=True)
    with open(path + ".tmp", "w") as f:
        f.write(str(epoch + 1))
    os.replace(path + ".tmp", path)
open("/opt/ml/model/model.pth", "w").write("weights")
"""


@pytest.fixture
def sagemaker(tmp_path: Path) -> Iterator[Any]:
    box, reason = container.probe()
    if box is None:
        missing_part(f"needs the bubblewrap sandbox: {reason}")
    with local_sagemaker_in(tmp_path / "state", sandbox=True):
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="code/spot.py", Body=SPOT_TRAIN)
        yield boto3.client("sagemaker", region_name=REGION)


def start_spot_job(sagemaker: Any, name: str, epochs: int, pace: float, max_wait: int) -> None:
    request = training_job_request(
        name,
        algorithm={
            "TrainingImage": "pytorch-training:local",
            "ContainerEntrypoint": ["/bin/bash"],
            "ContainerArguments": [
                "-c",
                f"{sys.executable} /opt/ml/input/data/code/spot.py {epochs} {pace}",
            ],
            "MetricDefinitions": [{"Name": "valid_acc", "Regex": r"valid_acc=([0-9.]+)"}],
        },
        channels={"code": f"s3://{BUCKET}/code/"},
        output=f"s3://{BUCKET}/models",
        max_runtime=60,
        EnableManagedSpotTraining=True,
        CheckpointConfig={"S3Uri": f"s3://{BUCKET}/checkpoints/{name}/"},
    )
    request["StoppingCondition"]["MaxWaitTimeInSeconds"] = max_wait
    request["RoleArn"] = ROLE
    sagemaker.create_training_job(**request)


def epochs_done(name: str) -> int:
    """The last epoch the job's first host saved, read from its checkpoint directory."""
    run = TRAINING_RUNS.get((ACCOUNT, REGION, name))
    assert run is not None
    saved = run._layouts[0].root / "checkpoints" / "epoch"
    return int(saved.read_text()) if saved.is_file() else 0


def interrupt_after(sagemaker: Any, name: str, epochs: int) -> None:
    wait_for(lambda: epochs_done(name), lambda done: done >= epochs, 60)
    run = TRAINING_RUNS.get((ACCOUNT, REGION, name))
    assert run is not None
    run.interrupt()
    wait_for(
        lambda: sagemaker.describe_training_job(TrainingJobName=name),
        lambda job: (
            job["SecondaryStatus"] == "Training"
            and any(t["Status"] == "Interrupted" for t in job["SecondaryStatusTransitions"])
        ),
        60,
    )


def test_an_interrupted_spot_job_resumes_from_its_checkpoints(sagemaker: Any) -> None:
    start_spot_job(sagemaker, "spot-twice", epochs=6, pace=0.4, max_wait=120)
    interrupt_after(sagemaker, "spot-twice", 2)
    interrupt_after(sagemaker, "spot-twice", 4)
    job = wait_job(sagemaker, "spot-twice", timeout=120)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    statuses = [t["Status"] for t in job["SecondaryStatusTransitions"]]
    restart = ["Interrupted", "Starting", "Downloading", "Training"]
    assert statuses == [
        "Starting",
        "Downloading",
        "Training",
        *restart,
        *restart,
        "Uploading",
        "Completed",
    ]
    log = (
        Path(TRAINING_RUNS.get((ACCOUNT, REGION, "spot-twice"))._layouts[0].root)  # type: ignore[union-attr]
        / "training.log"
    ).read_text()
    starts = [int(line.split("=")[1]) for line in log.splitlines() if "start epoch=" in line]
    assert starts[0] == 0 and starts[1] >= 2 and starts[2] >= starts[1]  # resumed, never from 0
    assert job["FinalMetricDataList"][0]["Value"] == pytest.approx(0.6)  # all 6 epochs ran
    assert job["BillableTimeInSeconds"] < job["TrainingTimeInSeconds"]  # spot savings
    s3 = boto3.client("s3", region_name=REGION)
    saved = s3.get_object(Bucket=BUCKET, Key="checkpoints/spot-twice/epoch")["Body"].read()
    assert saved == b"6"


def test_past_max_wait_the_job_ends_stopped(sagemaker: Any) -> None:
    start_spot_job(sagemaker, "spot-late", epochs=50, pace=0.5, max_wait=2)
    job = wait_job(sagemaker, "spot-late", timeout=60)
    assert job["TrainingJobStatus"] == "Stopped"
    assert job["SecondaryStatus"] == "MaxWaitTimeExceeded"


def test_only_a_spot_job_training_can_be_interrupted(sagemaker: Any) -> None:
    start_spot_job(sagemaker, "spot-done", epochs=1, pace=0.0, max_wait=120)
    wait_job(sagemaker, "spot-done", timeout=60)
    run = TRAINING_RUNS.get((ACCOUNT, REGION, "spot-done"))
    assert run is not None
    with pytest.raises(ValidationError, match="only while Training"):
        run.interrupt()


def test_the_local_clouds_api_reclaims_a_spot_job(sagemaker: Any) -> None:
    """POST /_localcloud/spot-interruptions, what `python -m localcloud interrupt` sends."""
    from werkzeug.test import Client

    passed_on: list[str] = []

    def moto(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        passed_on.append(environ["PATH_INFO"])
        start_response("200 OK", [])
        return [b""]

    client = Client(admin_api.wrap(moto))
    start_spot_job(sagemaker, "spot-api", epochs=40, pace=0.3, max_wait=120)
    wait_for(lambda: epochs_done("spot-api"), lambda done: done >= 1, 60)
    reply = client.post(admin_api.SPOT_INTERRUPTIONS, json={"TrainingJobName": "spot-api"})
    assert (reply.status_code, reply.json) == (200, {"interrupted": "spot-api"})
    wait_for(
        lambda: sagemaker.describe_training_job(TrainingJobName="spot-api"),
        lambda job: any(t["Status"] == "Interrupted" for t in job["SecondaryStatusTransitions"]),
        30,
    )
    refused = client.post(admin_api.SPOT_INTERRUPTIONS, json={"TrainingJobName": "no-such-job"})
    assert refused.status_code == 400
    assert refused.json["message"] == "no training job named no-such-job runs in this local cloud"
    assert client.post(admin_api.SPOT_INTERRUPTIONS, data=b"not json").status_code == 400
    assert client.get("/_localcloud/other").status_code == 404
    client.get("/2015-03-31/functions")  # any other path is moto's
    assert passed_on == ["/2015-03-31/functions"]
    sagemaker.stop_training_job(TrainingJobName="spot-api")
    wait_job(sagemaker, "spot-api", timeout=60)
