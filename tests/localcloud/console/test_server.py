"""The console's HTTP server against a plain moto server: its JSON API, its answers to
bad requests (4xx with a message, never a traceback) and its static files."""

from __future__ import annotations

import datetime
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.core.config import default_user_config

from localcloud.console import Console
from localcloud.console.data import started_by, state_runs
from localcloud.runner import report
from tests.data_helpers import free_port
from tests.localcloud.sagemaker_support import wait_for
from tests.moto_support import moto_server
from tools.costs import Prices

REGION = "us-east-1"
DEFINITION = {
    "StartAt": "Hello",
    "States": {"Hello": {"Type": "Pass", "Next": "Bye"}, "Bye": {"Type": "Succeed"}},
}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def machine(moto_url: str) -> str:
    sfn = boto3.client(
        "stepfunctions",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return sfn.create_state_machine(
        name="hello",
        definition=json.dumps(DEFINITION),
        roleArn="arn:aws:iam::123456789012:role/hello",
    )["stateMachineArn"]


@pytest.fixture(scope="module")
def console(
    moto_url: str, machine: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    threads = set(threading.enumerate())
    console = Console(moto_url, REGION, state_dir=tmp_path_factory.mktemp("state"))
    console.start()
    try:
        yield console
    finally:
        console.stop()
        assert set(threading.enumerate()) <= threads, "console threads left running"


def get(console: Console, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(console.url + path.lstrip("/"), timeout=20) as response:
            return response.status, response.headers["content-type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["content-type"], exc.read()


def get_json(console: Console, path: str) -> tuple[int, Any]:
    status, kind, body = get(console, path)
    assert kind == "application/json"
    return status, json.loads(body)


def test_the_page_and_its_assets_are_served_locally(console: Console) -> None:
    status, kind, body = get(console, "/")
    assert status == 200 and kind.startswith("text/html")
    for asset in ("/app.js", "/app.css"):
        assert f'"{asset}"'.encode() in body
        status, _, _ = get(console, asset)
        assert status == 200
    assert b"http" not in get(console, "/app.js")[2].replace(b"http://www.w3.org", b"")


@pytest.mark.parametrize("path", ["/../server.py", "/%2e%2e/server.py", "/nothing.js"])
def test_files_outside_the_static_folder_are_not_served(console: Console, path: str) -> None:
    status, body = get_json(console, path)
    assert status == 404 and "no such page" in body["message"]


def test_an_execution_of_a_state_machine_shows_its_graph_and_history(
    console: Console, machine: str, moto_url: str
) -> None:
    sfn = console.reader.clients["stepfunctions"]
    arn = sfn.start_execution(stateMachineArn=machine, input='{"dataset": "s3://b/d.zip"}')[
        "executionArn"
    ]
    status, rows = get_json(console, "/api/executions")
    assert status == 200
    row = next(r for r in rows if r["arn"] == arn)
    assert row["state_machine"] == "hello" and row["started_by"] == "manual: s3://b/d.zip"
    status, execution = get_json(console, f"/api/execution?arn={arn}")
    assert status == 200
    assert {n["name"] for n in execution["graph"]["nodes"]} == {
        "__start__",
        "Hello",
        "Bye",
        "__end__",
    }
    assert execution["events_total"] == len(execution["events"])


def test_a_finished_execution_shows_what_history_says_it_would_cost(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(default_user_config, "stepfunctions", {"execute_state_machine": True})
    sfn = console.reader.clients["stepfunctions"]
    machine = sfn.create_state_machine(  # moto runs it: it ends
        name="hello-run",
        definition=json.dumps(DEFINITION),
        roleArn="arn:aws:iam::123456789012:role/hello",
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, name="run", input="{}")["executionArn"]
    description = wait_for(
        lambda: sfn.describe_execution(executionArn=arn),
        lambda d: d["status"] != "RUNNING",
        20,
    )
    status, execution = get_json(console, f"/api/execution?arn={arn}")
    assert status == 200 and execution["status"] == "SUCCEEDED"
    events = sfn.get_execution_history(executionArn=arn)["events"]
    printed = report.cost_estimate(console.reader, description, events)  # history's lines
    assert execution["cost"] == [line.strip() for line in printed]
    assert "Step Functions: 2 state transitions" in execution["cost"][2]  # Hello and Bye
    assert execution["cost"][-1] == f"({Prices.load().caption}; tools/prices.json)"


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/execution", 400, "'arn' is required"),
        (
            "/api/execution?arn=arn:aws:states:us-east-1:123456789012:execution:hello:nope",
            404,
            "no execution",
        ),
        ("/api/training-jobs/nope", 404, "no training job nope"),
        ("/api/training-jobs/nope/plot.svg", 404, "no training job nope"),
        ("/api/endpoints/nope", 404, "no endpoint nope"),
        ("/api/nothing", 404, "no such API"),
    ],
)
def test_bad_requests_get_a_status_and_a_message(
    console: Console, path: str, status: int, message: str
) -> None:
    got, body = get_json(console, path)
    assert got == status
    assert message in body["message"] and "Traceback" not in body["message"]


def test_empty_lists_when_nothing_ran(console: Console) -> None:
    assert get_json(console, "/api/training-jobs") == (200, [])
    assert get_json(console, "/api/endpoints") == (200, [])
    assert get_json(console, "/api/registry") == (200, {"groups": []})
    assert console.write_plots() == []


def test_the_local_cloud_gone_is_a_503_with_a_message(tmp_path: Path) -> None:
    console = Console(f"http://127.0.0.1:{free_port()}", REGION, state_dir=tmp_path)
    console.start()
    try:
        status, body = get_json(console, "/api/executions")
    finally:
        console.stop()
    assert status == 503 and "did not answer" in body["message"]


def test_started_by_names_the_upload_or_says_manual() -> None:
    event = {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": "b"}, "object": {"key": "datasets/x.zip"}},
    }
    assert started_by(json.dumps(event)) == "upload s3://b/datasets/x.zip (Object Created)"
    assert started_by("{}") == "manual"
    assert started_by("not json") == "manual"


def test_started_by_names_the_event_and_the_rules_it_matches() -> None:
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/stack-models/2"
    event = {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Model Package State Change",
        "detail": {"ModelPackageArn": arn, "ModelApprovalStatus": "Approved"},
    }
    rules = [
        ("stack-ModelApproved-1", {"source": ["aws.sagemaker"]}),
        ("stack-DatasetUploaded-1", {"source": ["aws.s3"]}),
    ]
    assert started_by(json.dumps(event), rules) == (
        f"model package {arn} Approved (SageMaker Model Package State Change) "
        "via rule stack-ModelApproved-1"
    )


def test_state_runs_keep_every_entry_with_its_input_output_and_failure() -> None:
    def ev(n: int, kind: str, **details: Any) -> dict[str, Any]:
        key = {"Entered": "stateEnteredEventDetails", "Exited": "stateExitedEventDetails"}
        body: dict[str, Any] = {"id": n, "type": kind, "timestamp": None}
        for suffix, name in key.items():
            if kind.endswith(suffix):
                body[name] = details
        if kind == "TaskFailed":
            body["taskFailedEventDetails"] = details
        return body

    runs = state_runs(
        [
            ev(1, "TaskStateEntered", name="Check", input='{"n": 1}'),
            ev(2, "TaskStateExited", name="Check", output='{"n": 2}'),
            ev(3, "TaskStateEntered", name="Check", input='{"n": 2}'),
            ev(4, "TaskFailed", error="Boom", cause='{"errorMessage": "bad", "errorType": "Boom"}'),
            ev(5, "TaskStateExited", name="Check", output='{"error": {}}'),
        ]
    )
    first, second = runs["Check"]
    assert (first["input"], first["output"], first["error"]) == ('{"n": 1}', '{"n": 2}', None)
    assert (second["error"], second["cause"]) == ("Boom", "Boom: bad")


def test_an_endpoint_shows_its_variants_scaling_and_a_note_for_missing_apis(
    console: Console,
) -> None:
    sm = console.reader.clients["sagemaker"]
    role = "arn:aws:iam::123456789012:role/sm"
    sm.create_model(
        ModelName="m1",
        ExecutionRoleArn=role,
        PrimaryContainer={"Image": "img", "ModelDataUrl": "s3://b/model.tar.gz"},
    )
    variant = {"VariantName": "AllTraffic", "ModelName": "m1", "InstanceType": "ml.m5.large"}
    sm.create_endpoint_config(
        EndpointConfigName="c1", ProductionVariants=[{**variant, "InitialInstanceCount": 2}]
    )
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
    console.reader.clients["application-autoscaling"].register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId="endpoint/ep/variant/AllTraffic",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=3,
    )
    last_minute = datetime.datetime.now(datetime.UTC).replace(second=0, microsecond=0) - (
        datetime.timedelta(minutes=1)
    )
    dimensions = [
        {"Name": "EndpointName", "Value": "ep"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    console.reader.clients["cloudwatch"].put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {
                "MetricName": "Invocations",
                "Dimensions": dimensions,
                "Timestamp": last_minute + datetime.timedelta(seconds=seconds),
                "Value": value,
            }
            for seconds, value in ((10, 2.0), (40, 3.0))
        ],
    )
    cloudwatch = console.reader.clients["cloudwatch"]
    for alarm, endpoint in (("ep-errors", "ep"), ("other-errors", "other")):
        cloudwatch.put_metric_alarm(
            AlarmName=alarm,
            Namespace="AWS/SageMaker",
            MetricName="Invocation5XXErrors",
            Dimensions=[{"Name": "EndpointName", "Value": endpoint}],
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
    status, ep = get_json(console, "/api/endpoints/ep")
    assert status == 200
    assert [a["name"] for a in ep["alarms"]] == ["ep-errors"]  # only this endpoint's
    assert ep["alarms"][0]["metric"] == "AWS/SageMaker Invocation5XXErrors"
    assert (ep["config"], ep["status"]) == ("c1", "InService")
    [only] = ep["variants"]
    assert (only["model"], only["instance_type"]) == ("m1", "ml.m5.large")
    assert only["scaling"]["targets"][0]["max"] == 3
    from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse

    if "describe_scaling_activities" in vars(ApplicationAutoScalingResponse):  # local SageMaker
        assert (only["scaling"]["activities"], only["scaling"]["activity_note"]) == ([], None)
    else:  # stock moto has no DescribeScalingActivities: a note instead of an error
        assert "DescribeScalingActivities" in only["scaling"]["activity_note"]
    assert only["per_minute"]["Invocations"] == [[last_minute.isoformat(), 5.0]]  # one row
    assert set(only["per_minute"]) == {
        "Invocations",
        "Invocation4XXErrors",
        "Invocation5XXErrors",
        "ModelError",
    }


def test_the_registry_lists_versions_with_approval_and_metadata(console: Console) -> None:
    sm = console.reader.clients["sagemaker"]
    sm.create_model_package_group(ModelPackageGroupName="classifier")
    sm.create_model_package(
        ModelPackageGroupName="classifier",
        ModelPackageDescription="run abc",
        ModelApprovalStatus="PendingManualApproval",
        CustomerMetadataProperties={"valid_acc": "0.91"},
        InferenceSpecification={
            "Containers": [{"Image": "img", "ModelDataUrl": "s3://b/model.tar.gz"}],
            "SupportedContentTypes": ["image/jpeg"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    )
    status, registry = get_json(console, "/api/registry")
    assert status == 200
    [group] = registry["groups"]
    [version] = group["versions"]
    assert group["name"] == "classifier"
    assert version["approval"] == "PendingManualApproval"
    assert version["metadata"] == {"valid_acc": "0.91"}


def test_finished_jobs_get_one_png_each_in_the_state_dir(console: Console) -> None:
    sm = console.reader.clients["sagemaker"]
    sm.create_training_job(  # stock moto: Completed at once
        TrainingJobName="job-1",
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        RoleArn="arn:aws:iam::123456789012:role/sm",
        OutputDataConfig={"S3OutputPath": "s3://b/models"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )
    [png] = console.write_plots()
    assert png == console.state_dir / "plots" / "job-1.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = png.stat().st_mtime_ns
    assert console.write_plots() == [png]  # listed again, not drawn again
    assert png.stat().st_mtime_ns == drawn
    status, kind, svg = get(console, "/api/training-jobs/job-1/plot.svg")
    assert (status, kind) == (200, "image/svg+xml") and b"no metrics yet" in svg


def test_a_job_that_failed_before_its_first_epoch_gets_no_png(console: Console) -> None:
    from moto.sagemaker.models import sagemaker_backends

    sm = console.reader.clients["sagemaker"]
    sm.create_training_job(
        TrainingJobName="job-failed",
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        RoleArn="arn:aws:iam::123456789012:role/sm",
        OutputDataConfig={"S3OutputPath": "s3://b/models"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )
    job = sagemaker_backends["123456789012"][REGION].training_jobs["job-failed"]
    job.training_job_status = "Failed"  # a bad data set: it failed before any epoch
    pngs = console.write_plots()
    assert console.plot_path("job-failed") not in pngs
    assert not console.plot_path("job-failed").exists()
    assert console.write_plots() == pngs  # and it is not looked at again
