"""The real pipeline end to end in the local cloud (template.yaml, the ASL, the functions,
train.py on two hosts, serve.py endpoints), on a tiny two-colour data set (see
pipeline_support.py). The faults a run can meet are in test_faults.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from localcloud.client import Connection
from localcloud.launcher import LocalCloudProcess
from localcloud.report import training_job_of
from tests.localcloud.pipeline_support import (
    classify,
    endpoint,
    entered,
    finish,
)

pytestmark = pytest.mark.e2e

SUCCESS_PATH = [
    "PrepareRun",
    "StartTraining",
    "WaitForTraining",
    "CheckTraining",
    "QualityGate",
    "AcquireDeploymentLock",
    "DeployModel",
    "WaitForEndpoint",
    "CheckEndpoint",
    "AttachAutoscaling",
    "SmokeTest",
    "ReleaseLock",
    "Summarize",
]


def test_upload_trains_on_two_hosts_deploys_and_serves(
    conn: Connection, cloud: LocalCloudProcess, deployed: dict[str, Any]
) -> None:
    description = deployed["description"]
    assert description["status"] == "SUCCEEDED", description.get("cause")
    arn = description["executionArn"]
    names = entered(conn, arn)
    assert [name for name in SUCCESS_PATH if name not in names] == []
    job = training_job_of(conn, description)
    assert job is not None and job["TrainingJobStatus"] == "Completed"
    assert job["ResourceConfig"]["InstanceCount"] == 2
    streams = conn.client("logs").describe_log_streams(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{job['TrainingJobName']}/"
    )["logStreams"]
    hosts = {s["logStreamName"].split("/", 1)[1].rsplit("-", 1)[0] for s in streams}
    assert hosts == {"algo-1", "algo-2"}  # two training processes really ran
    live = endpoint(conn)
    assert live["EndpointStatus"] == "InService"
    targets = conn.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker"
    )["ScalableTargets"]
    assert [t["ResourceId"] for t in targets] == ["endpoint/image-classifier/variant/AllTraffic"]
    reply = classify(conn, deployed["image"])
    assert reply["predictions"][0]["label"] == "dog"
    archived = (
        cloud.settings.state_dir / "executions" / "e2e-train-deploy" / f"{description['name']}.json"
    )
    assert json.loads(archived.read_text())["execution"]["status"] == "SUCCEEDED"


def test_duplicate_event_trains_once(conn: Connection, deployed: dict[str, Any]) -> None:
    sm = conn.client("sagemaker")
    jobs_before = sm.list_training_jobs()["TrainingJobSummaries"]
    sfn = conn.client("stepfunctions")
    arn = sfn.start_execution(  # EventBridge delivers at least once: the same event again
        stateMachineArn=conn.the_state_machine(), input=deployed["description"]["input"]
    )["executionArn"]
    description = finish(conn, arn)
    assert description["status"] == "SUCCEEDED", description.get("cause")
    assert sm.list_training_jobs()["TrainingJobSummaries"] == jobs_before
    assert endpoint(conn)["EndpointConfigName"] == deployed["config"]


def test_state_dir_keeps_logs_models_and_histories(
    cloud: LocalCloudProcess, deployed: dict[str, Any]
) -> None:
    state = cloud.settings.state_dir
    assert list((state / "logs" / "lambda").glob("*PrepareRun*.log"))
    assert len(list((state / "executions").rglob("*.json"))) >= 2
    assert any(p.name == "model.tar.gz" for p in (state / "sagemaker").rglob("*"))
